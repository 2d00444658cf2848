"""Mining speed: batchmix's miner vs sentence-transformers' `util.mine_hard_negatives`, texts/s.

Same model (the embedded multilingual-e5-small, mean pooling, normalised, prefixes `query: ` /
`passage: `, one max length for both sides), same queries (the XQuAD-R training questions of
`--langs`) and same candidate pool (every sentence of the training articles in those languages),
same options (top 3 of the top 50, exact search; faiss on both sides when installed).

- batchmix: `batchmix.data.mining.mine` with `pool=all` (one pool: the list ST gets as `corpus`);
- peer: `mine_hard_negatives(Dataset{anchor, positive}, model, corpus=pool, range_max=50,
  num_negatives=3, query_prompt="query: ", corpus_prompt="passage: ", use_faiss=...)`.

texts/s = (queries + pool texts) / wall seconds of the whole call (encoding + search + selection),
best of `--repeats`, the sides alternating. The ratio printed is batchmix / ST (higher: batchmix
faster). The outputs differ by design (batchmix skips translations of the answer; ST only the
exact positive), so their overlap is printed, not asserted.

    .venv/bin/python benchmarks/mining_speed.py [--langs en de] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import bench_common  # noqa: E402

from batchmix.data.lareqa import load_lareqa  # noqa: E402
from batchmix.data.root import resolve_data_root  # noqa: E402
from batchmix.data.split import split_by_article  # noqa: E402
from batchmix.data.mining import MiningOptions, build_pool, mine  # noqa: E402

BATCH = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", nargs="+", default=["en", "de"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    import transformers
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from sentence_transformers.util import mine_hard_negatives

    from batchmix.models.factory import build_dual_encoder
    from batchmix.models.loading import EMBEDDED, resolve_name

    transformers.utils.logging.disable_progress_bar()
    split = split_by_article(load_lareqa(resolve_data_root(None, "xquad-r"), args.langs), seed=0)["train"]
    groups = split.training_groups()
    pool = build_pool(groups, split)
    rows = [(g, lang) for g, pairs in enumerate(groups.pairs) for lang in sorted(pairs)]
    texts = len(rows) + len(pool)

    module = build_dual_encoder({"name_or_path": EMBEDDED, "pooling": "mean", "query_prefix": "query: ", "passage_prefix": "passage: ",
                                 "query_max_length": args.max_length, "passage_max_length": args.max_length, "architecture": None,
                                 "normalize": True, "shared": True, "freeze_embeddings": False, "train_top_layers": None,
                                 "trunk_cache": "off", "gradient_checkpointing": False, "compile": False,
                                 "compile_backend": "inductor"}).eval()
    transformer = Transformer(resolve_name(EMBEDDED), max_seq_length=args.max_length)
    st_model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()], device="cpu")
    dataset = Dataset.from_dict({"anchor": [groups.pairs[g][lang].query for g, lang in rows],
                                 "positive": [groups.pairs[g][lang].positive for g, lang in rows]})
    try:
        import faiss  # noqa: F401
        use_faiss = True
    except ImportError:
        use_faiss = False
    options = MiningOptions(num_negatives=3, range_max=50, pool="all", search="faiss" if use_faiss else "torch")

    def run_batchmix():
        return mine(groups, pool,
                    lambda t: module.encode_texts(t, "query", BATCH, desc=False),
                    lambda t: module.encode_texts(t, "passage", BATCH, desc=False), options)[0]

    def run_st():
        return mine_hard_negatives(dataset, st_model, corpus=pool.texts, range_max=50, num_negatives=3,
                                   query_prompt="query: ", corpus_prompt="passage: ", batch_size=BATCH,
                                   use_faiss=use_faiss, output_format="n-tuple", verbose=False)

    best = {"batchmix": float("inf"), "st": float("inf")}
    outputs = {}
    for _ in range(args.repeats):
        for name, fn in (("batchmix", run_batchmix), ("st", run_st)):
            t0 = time.perf_counter()
            outputs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)

    ours = {(g, lang): {n.text for n in outputs["batchmix"].pairs[g][lang].negatives} for g, lang in rows}
    theirs = outputs["st"]
    neg_cols = [c for c in theirs.column_names if c.startswith("negative")]
    by_anchor = {}
    for row in theirs:
        by_anchor.setdefault(row["anchor"], set()).update(row[c] for c in neg_cols)
    overlap = [len(ours[r] & by_anchor.get(groups.pairs[r[0]][r[1]].query, set())) / 3 for r in rows]
    # How often a negative answers the query's own id (a translation of its answer, or a shared answer
    # sentence): the false negatives batchmix's miner exists to avoid.
    answers: dict[str, set[str]] = {}
    for text, ids in zip(pool.texts, pool.answers):
        for qid in ids:
            answers.setdefault(qid, set()).add(text)
    def own(found: dict) -> float:
        hits = [len(found[r] & answers[groups.ids[r[0]]]) for r in rows]
        return sum(hits) / (3 * len(rows))
    own_rate = {"batchmix": own(ours), "st": own({r: by_anchor.get(groups.pairs[r[0]][r[1]].query, set()) for r in rows})}
    rate = {k: texts / v for k, v in best.items()}
    print(f"mining: XQuAD-R train split {'+'.join(args.langs)}: {len(rows)} queries, pool {len(pool)} passages, "
          f"{texts} texts; top 3 of top 50, search {'faiss' if use_faiss else 'torch'}; {args.threads} threads; "
          f"best of {args.repeats}")
    print(f"  batchmix  {best['batchmix']:7.1f} s   {rate['batchmix']:7.1f} texts/s")
    print(f"  ST        {best['st']:7.1f} s   {rate['st']:7.1f} texts/s   (sentence_transformers.util.mine_hard_negatives)")
    print(f"  ratio batchmix / ST texts/s: {rate['batchmix'] / rate['st']:.2f}")
    print(f"  negatives in common per query: {sum(overlap) / len(overlap):.2f} of 3 "
          f"(batchmix also skips translations of the answer)")
    print(f"  negatives that answer the query's own id (false negatives): batchmix {own_rate['batchmix']:.1%}, "
          f"ST {own_rate['st']:.1%}")
    bench_common.print_provenance(load_before, shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    return 0


if __name__ == "__main__":
    bench_common.run(main)
