"""A 4-point ratio sweep: batchmix's wall time vs 4 sequential sentence-transformers fits + evaluations.

Same model (the embedded multilingual-e5-small), same trainable layers (the top `--top` of 12; the
embeddings and the layers below frozen on both sides), same data (the XQuAD-R training articles:
each point trains `--steps` batches of 16 on exactly the batches batchmix's sampler draws for its
ratio: mono only, cross only, hybrid, thirds), same final evaluation work (every question and
candidate of the held-out test and val articles encoded once and scored on the multilingual pool),
max length 128 for queries and passages on both sides.

Printed as a decomposition, like for like first:

1. **fp32 vs fp32**: `python train.py -m ratio=mono_only,cross_only,hybrid,thirds model.train_top_layers=K
   model.trunk_cache=off` (Hydra's basic launcher: one point after another, all threads) against the
   peer in fp32: for each ratio a fresh `SentenceTransformerTrainer` (MultipleNegativesRankingLoss,
   same lr / warm-up / weight decay / clipping) on those batches in that order, then one
   `InformationRetrievalEvaluator` per held-out split (test, val) over its multilingual pool;
2. **bf16 vs bf16**: the same two with `trainer.precision=bf16-mixed` and ST's `bf16=True`, its
   evaluators under `torch.autocast("cpu", dtype=torch.bfloat16)`;
3. **+ the trunk cache** (batchmix only): 2. with `model.trunk_cache=disk` from an empty cache;
4. **+ 2 parallel points** (batchmix only): 3. with `hydra/launcher=local_parallel` (two workers of
   one thread each), i.e. every switch on.

Lines 3 and 4 are advantages the peer has no equivalent of; each is its own line, against the bf16
peer. Every side runs in this process's wall clock, whole: start-up, model loads, training,
evaluation; every batchmix side starts from an empty trunk cache. One run per side (the sweep takes
~30 min on 2 cores); `--skip-fp32` leaves out pair 1.

    .venv/bin/python benchmarks/sweep_speed.py [--steps 30] [--top 2] [--skip-fp32]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import bench_common  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RATIOS = ("mono_only", "cross_only", "hybrid", "thirds")
MAX_LENGTH = 128


def common_overrides(args: argparse.Namespace) -> list[str]:
    return [f"data.batches_per_epoch={args.steps}", f"model.train_top_layers={args.top}", "eval.before=false",
            "eval.val_every_n_steps=0", "eval.trec=false", "save_model=false", "logger=none", "checkpoint.every_n_steps=0",
            f"model.query_max_length={MAX_LENGTH}", f"model.passage_max_length={MAX_LENGTH}", "resume=false"]


def batchmix_sweep(args: argparse.Namespace, extra: list[str], env: dict[str, str], out: Path) -> float:
    cmd = [sys.executable, "train.py", "-m", f"ratio={','.join(RATIOS)}", *common_overrides(args), *extra,
           f"hydra.sweep.dir={out}", "~hydra.callbacks.report"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"batchmix sweep failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    missing = [n for n in range(len(RATIOS)) if not (out / str(n) / "metrics.json").is_file()]
    if missing:
        raise SystemExit(f"batchmix sweep left runs {missing} without metrics.json in {out}")
    return seconds


# The batchmix sides, in the order printed: (label, overrides, the ST precision it is held against).
BF16 = "trainer.precision=bf16-mixed"
SIDES = [
    ("like for like, fp32 (no cache, one point at a time)", ["model.trunk_cache=off"], "fp32"),
    ("like for like, bf16 (no cache, one point at a time)", [BF16, "model.trunk_cache=off"], "bf16"),
    ("bf16 + the trunk cache (batchmix only)", [BF16], "bf16"),
    ("bf16 + the trunk cache + 2 parallel points of 1 thread (batchmix only: every switch on)",
     [BF16, "hydra/launcher=local_parallel"], "bf16"),
]


def fresh_cache(tmp: Path) -> dict[str, str]:
    """An environment whose $BATCHMIX_CACHE is empty of trunk states but holds the converted model."""
    from batchmix.core.cache import cache_root
    from batchmix.models.embedded.e5 import ensure_embedded_model

    model = ensure_embedded_model()
    root = tmp / "cache"
    root.mkdir(parents=True)
    (root / model.name).symlink_to(model)
    assert cache_root() != root
    return {**os.environ, "BATCHMIX_CACHE": str(root)}


def st_sweep(args: argparse.Namespace, bf16: bool) -> float:
    """The peer: per ratio, fit on batchmix's batches, then evaluate test and val (bf16: HF's `bf16=True`
    for training, CPU bf16 autocast for the evaluators). Returns seconds."""
    sys.path.insert(0, str(Path(__file__).parent))
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import PrinterCallback

    from batchmix.data.load import load_splits
    from batchmix.models.loading import resolve_name
    from batchmix.run.preflight import validate
    from eval_speed import st_inputs
    from train_speed import BatchmixSetup, _in_order_batches, build_st_model, compose_config, st_dataset

    start = time.perf_counter()
    model_dir = resolve_name("embedded:multilingual-e5-small")
    for ratio in RATIOS:
        ns = argparse.Namespace(batch_size=16, max_length=MAX_LENGTH, unfreeze=False, seed=0, device="cpu", precision="32-true",
                                workers=0, model_dir=None, override=[f"ratio={ratio}", f"data.batches_per_epoch={args.steps}"])
        cfg = compose_config(ns)
        groups, splits = load_splits(cfg.data)
        setup = BatchmixSetup(cfg, groups, validate(cfg))
        dataset = st_dataset(setup, args.steps)
        torch.manual_seed(cfg.seed)
        model = build_st_model(setup, model_dir, MAX_LENGTH)
        hf = model[0].auto_model
        layers = hf.encoder.layer
        for module in [hf.embeddings, *layers[: len(layers) - args.top]]:  # = model.train_top_layers
            module.requires_grad_(False)
        loss = MultipleNegativesRankingLoss(model, scale=1.0 / cfg.loss.temperature)
        with tempfile.TemporaryDirectory(prefix="bench-sweep-st-") as tmp:
            targs = SentenceTransformerTrainingArguments(
                output_dir=tmp, max_steps=args.steps, per_device_train_batch_size=16, learning_rate=cfg.optim.lr,
                weight_decay=cfg.optim.weight_decay, warmup_steps=cfg.optim.warmup_ratio, lr_scheduler_type="linear",
                max_grad_norm=cfg.trainer.gradient_clip_val, seed=cfg.seed, report_to="none", eval_strategy="no",
                save_strategy="no", disable_tqdm=True, use_cpu=True, batch_sampler=_in_order_batches, bf16=bf16)
            trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset, loss=loss)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
        langs = splits["test"].langs
        pool = argparse.Namespace(query_langs=langs, cand_langs=langs)
        for split in ("test", "val"):
            queries, docs, relevant = st_inputs(splits[split], pool)
            evaluator = InformationRetrievalEvaluator(
                {k: cfg.model.query_prefix + v for k, v in queries.items()}, {k: cfg.model.passage_prefix + v for k, v in docs.items()},
                relevant, show_progress_bar=False, write_csv=False, name=split, batch_size=cfg.eval.batch_size,
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                evaluator(model)
        print(f"  ST {'bf16' if bf16 else 'fp32'} {ratio}: {time.perf_counter() - start:.0f} s so far", flush=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per point (batch 16)")
    parser.add_argument("--top", type=int, default=2, help="trained top layers on every side")
    parser.add_argument("--skip-fp32", action="store_true", help="leave out the fp32 pair (about half the time)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(f"4-point sweep ({', '.join(RATIOS)}), {args.steps} steps of batch 16 each, top {args.top} of 12 layers trained, "
          f"final evaluation on the test and val articles; {os.cpu_count()} cores")
    sides = [side for side in SIDES if not (args.skip_fp32 and side[2] == "fp32")]
    seconds: dict[str, float] = {}
    st: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for n, (label, overrides, peer) in enumerate(sides):
            if peer not in st:  # the peer in this precision, just before batchmix's first side in it
                st[peer] = st_sweep(args, bf16=peer == "bf16")
                print(f"  sentence-transformers {peer}, 4 fits + IR evaluator, one after another: {st[peer]:.0f} s", flush=True)
            side = Path(tmp) / str(n)
            seconds[label] = batchmix_sweep(args, overrides, fresh_cache(side), side / "runs")
            print(f"  batchmix, {label}: {seconds[label]:.0f} s", flush=True)
    print("sweep wall time batchmix / sentence-transformers in the same precision (lower is faster):")
    previous = None
    for label, overrides, peer in sides:
        step = f"; {seconds[label] / previous:.2f} of the line above's time" if previous and "only" in label else ""
        print(f"  {label}: {seconds[label] / st[peer]:.2f}  ({seconds[label]:.0f} s vs ST {peer} {st[peer]:.0f} s{step})")
        previous = seconds[label]
    bench_common.print_provenance(load_before, "python " + " ".join(shlex.quote(a) for a in sys.argv))
    return 0


if __name__ == "__main__":
    bench_common.run(main)
