"""Encoding speed: batchmix's `encode_texts` vs sentence-transformers' `encode`, texts/s, all of XQuAD-R.

Same model (the embedded multilingual-e5-small: mean pooling, normalised), same texts (every
question with `query: ` and every candidate sentence with `passage: `, 11 languages, ~26k texts),
same max lengths (the model config's query / passage lengths), same batch size; both sort by length.

- batchmix: `DualEncoder.encode_texts` in fp32, and under CPU bf16 autocast (what
  `trainer.precision=bf16-mixed` runs an evaluation with);
- peer: `SentenceTransformer.encode` (fp32, its default), modules built on the same weights.

Printed: texts/s of each, the ratios batchmix / ST (fp32 vs fp32, and bf16 vs ST's fp32), and the
smallest cosine between each batchmix embedding and ST's, which checks that both encoded the same.
One timed run of each (26k texts take minutes; the sides run one after the other), `--limit N`
keeps N texts evenly spread over the list for a quick try.

    .venv/bin/python benchmarks/encode_speed.py [--limit 2000] [--threads N] [--batch-size 64]
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
from omegaconf import OmegaConf  # noqa: E402

from batchmix.config import CONF_DIR  # noqa: E402
from batchmix.data.lareqa import load_lareqa  # noqa: E402
from batchmix.data.root import resolve_data_root  # noqa: E402
from batchmix.models.factory import build_dual_encoder  # noqa: E402
from batchmix.models.loading import resolve_name  # noqa: E402


def spread(items: list[str], n: int | None) -> list[str]:
    if n is None or n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="XQuAD-R folder (default: $BATCHMIX_DATA or ../shared/data/xquad-r)")
    parser.add_argument("--limit", type=int, default=None, help="questions and candidates each (default: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for both sides")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    corpus = load_lareqa(resolve_data_root(args.root, "xquad-r"))
    questions = spread([q for ls in corpus.languages.values() for q in ls.questions], args.limit)
    candidates = spread([c for ls in corpus.languages.values() for c in ls.candidates], args.limit)
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "me5_small.yaml"))
    module = build_dual_encoder({**cfg, "train_top_layers": None}).eval()
    n = len(questions) + len(candidates)
    print(f"encoding {len(questions)} questions + {len(candidates)} candidates of XQuAD-R ({n} texts), "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads")

    def batchmix(bf16: bool) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            q = module.encode_texts(questions, "query", args.batch_size, desc=False)
            c = module.encode_texts(candidates, "passage", args.batch_size, desc=False)
        return time.perf_counter() - t0, torch.cat([q, c])

    def sentence_transformers() -> tuple[float, torch.Tensor]:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        transformer = Transformer(resolve_name(cfg["name_or_path"]), max_seq_length=cfg["query_max_length"])
        model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()], device="cpu")
        t0 = time.perf_counter()
        q = model.encode([cfg["query_prefix"] + t for t in questions], batch_size=args.batch_size, convert_to_tensor=True)
        model.max_seq_length = cfg["passage_max_length"]
        c = model.encode([cfg["passage_prefix"] + t for t in candidates], batch_size=args.batch_size, convert_to_tensor=True)
        return time.perf_counter() - t0, torch.cat([q, c]).float()

    st_s, st_emb = sentence_transformers()
    fp32_s, fp32_emb = batchmix(bf16=False)
    bf16_s, bf16_emb = batchmix(bf16=True)
    rate = {name: n / s for name, s in (("st", st_s), ("fp32", fp32_s), ("bf16", bf16_s))}
    cos = {name: float((emb * st_emb).sum(-1).min()) for name, emb in (("fp32", fp32_emb), ("bf16", bf16_emb))}
    print(f"  sentence-transformers encode, fp32: {st_s:7.1f} s  {rate['st']:7.1f} texts/s")
    print(f"  batchmix encode_texts, fp32:        {fp32_s:7.1f} s  {rate['fp32']:7.1f} texts/s  (min cosine to ST {cos['fp32']:.6f})")
    print(f"  batchmix encode_texts, bf16 autocast: {bf16_s:5.1f} s  {rate['bf16']:7.1f} texts/s  (min cosine to ST {cos['bf16']:.6f})")
    print(f"encoding speed batchmix / sentence-transformers: fp32 vs fp32 {rate['fp32'] / rate['st']:.2f}x; "
          f"bf16 vs ST's default fp32 {rate['bf16'] / rate['st']:.2f}x (goal >= 1.5x with the chosen defaults)")
    bench_common.print_provenance(load_before, "python " + " ".join(shlex.quote(a) for a in sys.argv))
    return 0


if __name__ == "__main__":
    bench_common.run(main)
