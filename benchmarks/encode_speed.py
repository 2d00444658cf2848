"""Encoding speed: batchmix's `encode_texts` vs sentence-transformers' `encode`, texts/s, like for like.

Same model (the embedded multilingual-e5-small: mean pooling, normalised), same texts (questions
with `query: ` and candidate sentences with `passage: ` of XQuAD-R's 11 languages), same max lengths
(the model config's query / passage lengths), same batch size, same torch threads; both sort by length.
Each side runs in both precisions:

- fp32: batchmix `DualEncoder.encode_texts`; ST `SentenceTransformer.encode` (its default), modules
  built on the same weights;
- bf16: the same calls under `torch.autocast("cpu", dtype=torch.bfloat16)` (what
  `trainer.precision=bf16-mixed` runs an evaluation with, and what ST gets the same way).

Printed: texts/s of each side (best of `--rounds`, default 3; in every round the four sides run
one after another, ST then batchmix, fp32 then bf16, so a change of machine load hits all), the
ratios batchmix / ST in the same precision (the like-for-like lines, first), then bf16 / fp32 of each
side, and the smallest cosine between each batchmix embedding and ST's in that precision, which
checks that both encoded the same. `--limit N` (default 2000) keeps N questions and N candidates
evenly spread over the whole list (every language, the length mix of the corpus); `--limit 0`
encodes all ~26k texts (about 9 min a round on 2 cores).

    .venv/bin/python benchmarks/encode_speed.py [--limit 2000] [--rounds 3] [--threads N] [--batch-size 64]
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
from batchmix.core.errors import BatchmixError  # noqa: E402
from batchmix.models.factory import build_dual_encoder  # noqa: E402
from batchmix.models.loading import resolve_name  # noqa: E402


def spread(items: list[str], n: int | None) -> list[str]:
    if not n or n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


PRECISIONS = ("fp32", "bf16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="XQuAD-R folder (default: $BATCHMIX_DATA or ../shared/data/xquad-r)")
    parser.add_argument("--limit", type=int, default=2000, help="questions and candidates each, evenly spread (0: all)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each side's best is reported")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for both sides")
    args = parser.parse_args()
    if args.rounds < 1 or args.limit < 0:
        raise BatchmixError(f"--rounds {args.rounds} / --limit {args.limit}: need rounds >= 1 and limit >= 0 (0: all)")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    corpus = load_lareqa(resolve_data_root(args.root, "xquad-r"))
    questions = spread([q for ls in corpus.languages.values() for q in ls.questions], args.limit)
    candidates = spread([c for ls in corpus.languages.values() for c in ls.candidates], args.limit)
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "me5_small.yaml"))
    module = build_dual_encoder({**cfg, "train_top_layers": None}).eval()
    st_model = sentence_transformers_model(cfg)
    n = len(questions) + len(candidates)
    print(f"encoding {len(questions)} questions + {len(candidates)} candidates of XQuAD-R ({n} texts), "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, best of {args.rounds} rounds")

    def batchmix(bf16: bool) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            q = module.encode_texts(questions, "query", args.batch_size, desc=False)
            c = module.encode_texts(candidates, "passage", args.batch_size, desc=False)
        return torch.cat([q, c]).float()

    def sentence_transformers(bf16: bool) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            st_model.max_seq_length = cfg["query_max_length"]
            q = st_model.encode([cfg["query_prefix"] + t for t in questions], batch_size=args.batch_size, convert_to_tensor=True)
            st_model.max_seq_length = cfg["passage_max_length"]
            c = st_model.encode([cfg["passage_prefix"] + t for t in candidates], batch_size=args.batch_size, convert_to_tensor=True)
        return torch.cat([q, c]).float()

    sides = {"st": sentence_transformers, "batchmix": batchmix}
    seconds: dict[tuple[str, str], list[float]] = {(side, p): [] for p in PRECISIONS for side in sides}
    emb: dict[tuple[str, str], torch.Tensor] = {}
    for r in range(args.rounds):
        for precision in PRECISIONS:
            for side, encode in sides.items():  # alternating: ST, batchmix, ST, batchmix
                t0 = time.perf_counter()
                emb[side, precision] = encode(precision == "bf16")
                seconds[side, precision].append(time.perf_counter() - t0)
        print(f"  round {r + 1}: " + ", ".join(f"{side} {p} {seconds[side, p][-1]:.1f} s" for p in PRECISIONS for side in sides),
              flush=True)
    rate = {key: n / min(s) for key, s in seconds.items()}
    names = {"st": "sentence-transformers encode", "batchmix": "batchmix encode_texts"}
    print("encoding speed batchmix / sentence-transformers, like for like (same precision, texts, lengths, batch, threads):")
    for p in PRECISIONS:
        cos = float((emb["batchmix", p] * emb["st", p]).sum(-1).min())
        print(f"  {p} vs {p}: {rate['batchmix', p] / rate['st', p]:.2f}x  "
              f"(batchmix {rate['batchmix', p]:.1f} texts/s, ST {rate['st', p]:.1f} texts/s; min cosine batchmix-ST {cos:.6f})")
    for side, name in names.items():
        print(f"  {name}: " + ", ".join(f"{p} {rate[side, p]:.1f} texts/s (rounds {', '.join(f'{x:.1f}' for x in seconds[side, p])} s)"
                                        for p in PRECISIONS) + f"; bf16 / fp32 {rate[side, 'bf16'] / rate[side, 'fp32']:.2f}x")
    bench_common.print_provenance(load_before, "python " + " ".join(shlex.quote(a) for a in sys.argv))
    return 0


def sentence_transformers_model(cfg: dict):
    """ST's model on the same weights: Transformer -> mean Pooling -> Normalize (me5's own modules)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(resolve_name(cfg["name_or_path"]), max_seq_length=cfg["query_max_length"])
    return SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()], device="cpu")


if __name__ == "__main__":
    bench_common.run(main)
