"""mMARCO (unicamp-dl/mmarco) as one wide parquet that `data.source=hf` trains on.

mMARCO is published with a loading script, which `datasets` >= 4 no longer runs, and its languages
share MS MARCO query / passage ids only across separate TSV files. This joins them once: the first N
training queries (v2, Google-translated), one row per query id, `query_<lang>`, `passage_<lang>` and
`negatives_<lang>` (the BM25 negative of the id's first triple). Needs the hub (~3 GB per language's
collection). Not run here (no network): the file paths follow the dataset's `mmarco.py`; it was
checked only against a local stand-in of that repository layout.

    python experiments/mmarco/to_parquet.py            # writes mmarco_train.parquet
    python train.py data.languages=[de,en,es,zh] data.source=hf data.hf.path=parquet \
      data.hf.data_files=mmarco_train.parquet data.hf.layout=wide \
      'data.hf.columns.query="query_{lang}"' 'data.hf.columns.positive="passage_{lang}"' \
      'data.hf.columns.negatives="negatives_{lang}"' data.hard_negatives=1
"""

import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import hf_hub_download

N = 100_000
LANGS = {"en": "english", "de": "german", "es": "spanish", "zh": "chinese"}  # code -> mMARCO's name


def get(path: str) -> str:
    return hf_hub_download("unicamp-dl/mmarco", path, repo_type="dataset")


def tsv(path: str, keep: set[str]) -> dict[str, str]:
    """{id: text} for the ids in `keep` (two tab-separated columns, no header)."""
    out = {}
    with open(get(path), encoding="utf-8") as f:
        for line in f:
            i, _, text = line.rstrip("\n").partition("\t")
            if i in keep and text.strip():
                out[i] = text
    return out


def main() -> None:
    triples: dict[str, tuple[str, str]] = {}  # query id -> (positive id, BM25 negative id): its first triple
    with open(get("data/triples.train.ids.small.tsv")) as f:
        for line in f:
            qid, pos, neg = line.split()
            triples.setdefault(qid, (pos, neg))
            if len(triples) == N:
                break
    ids = sorted(triples)
    table: dict[str, list] = {"id": ids}
    for code, name in LANGS.items():
        queries = tsv(f"data/google/queries/train/{name}_queries.train.tsv", set(ids))
        passages = tsv(f"data/google/collections/{name}_collection.tsv", {p for t in triples.values() for p in t})
        ok = [i in queries and triples[i][0] in passages for i in ids]  # else this id lacks the language
        table[f"query_{code}"] = [queries[i] if k else None for i, k in zip(ids, ok)]
        table[f"passage_{code}"] = [passages[triples[i][0]] if k else None for i, k in zip(ids, ok)]
        table[f"negatives_{code}"] = [[passages[triples[i][1]]] if k and triples[i][1] in passages else [] for i, k in zip(ids, ok)]
    pq.write_table(pa.table(table), "mmarco_train.parquet")


if __name__ == "__main__":
    main()
