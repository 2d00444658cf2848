"""Training throughput: batchmix's Lightning training path vs sentence-transformers' trainer with MNRL.

Both sides train the same model on the same pairs, in the same batches and the same order, for the
same number of steps. They are built fresh each round and run one after the other (batchmix, ST,
batchmix, ST, ...), so a change in machine load hits both.

- **Model**: the embedded multilingual-e5-small (`resolve_name(EMBEDDED)`, a local HF directory),
  in fp32 with mean pooling and L2 normalisation. Both sides start from the same weights.
- **batchmix** uses its real training path, as `train.py` wires it: the composed Hydra config
  (model=me5_small, data=xquad_r, loss=infonce, ratio=default, trainer=cpu),
  `build_dual_encoder`, `HybridBatchSampler`, `PairCollator`, `HybridDataModule` and a Lightning
  `Trainer(...).fit` with `max_steps` = warm-up + timed steps. It runs no evaluation and saves no
  checkpoint. It has no logger (`logger=False`), but `self.log` still runs every step, as does the
  per-step history.
- **sentence-transformers** uses `SentenceTransformerTrainer` with
  `MultipleNegativesRankingLoss(scale = 1/temperature = 20)`. The model is
  `SentenceTransformer(modules=[Transformer(path, max_seq_length=L), Pooling(384, "mean"),
  Normalize()])`. The data is a `datasets.Dataset` with (anchor, positive) columns: exactly the
  pairs batchmix's sampler planned for those steps, with the "query: " / "passage: " prefixes
  already in the text (mean pooling includes them, as batchmix does). A sequential batch sampler
  keeps batchmix's batches and order. Other settings: `report_to="none"`, no evaluation, no
  saving, `logging_steps=1` (batchmix logs every step too), 0 dataloader workers, and ST's default
  optimizer (`adamw_torch_fused`; see Optimizer below).
- **Kept the same on both sides**: batch size, max length (ST has one `max_seq_length`, so
  batchmix's query and passage max lengths are both set to it), lr, weight decay, linear warm-up
  ratio, gradient clipping at 1.0, seed, fp32, torch thread count, and the trainable parameters.
  batchmix's me5_small freezes the word embeddings (`freeze_embeddings`), so the ST side freezes
  the same tensor. Both freeze the unused BERT pooler. HF's optimizer skips parameters with
  `requires_grad=False`. `--unfreeze` trains the embeddings on both sides.
- **Checked before timing**: the first batch tokenises to identical ids on both sides; its loss
  (eval mode) is the same to 1e-4; the trainable parameter counts match.
- **Dropout**: `from_pretrained` returns the encoder in eval mode, and Lightning 2.2+ keeps
  submodule modes. At batchmix's first step the script checks whether the encoder is in eval mode,
  which would mean dropout off, unlike HF's Trainer, which calls `model.train()`. If it is, the
  script switches the encoder to train mode for parity and prints a note. `--batchmix-as-built`
  measures it as found.
- **Optimizer**: ST keeps its own default optimizer unless `--st-optim adamw_torch` asks for
  batchmix's plain `torch.optim.AdamW`.
- **Threads**: the default is 1 torch thread. On a shared 2-core machine, 2 OpenMP threads stall
  whenever another process holds a core, and steps then vary several-fold.

Timing: a callback on each side records every step (Lightning `on_train_batch_start/end`, HF
`on_step_begin/end`). The first `--warmup` steps are discarded. Throughput is timed steps × batch
divided by the wall time from the end of the last warm-up step to the end of the last step, so
data loading and collation are included. Also reported:

- the median step interval (end to end) and the median compute time (batch start to batch end);
- the fastest step interval: the step least disturbed when another process takes a core;
- pairs per CPU-second of the process (`time.process_time`): time spent waiting for a core does
  not count, so on a loaded machine this is the steadiest comparison at 1 thread;
- the ratio per round.

The best round of each side is the headline number.

Sampler overhead is measured on its own, with no model, over one whole epoch of the same
schedule:

- sampler only: `HybridBatchSampler` planning plus iteration;
- sampler + collate: iterating the `HybridDataModule`'s DataLoader, which adds the
  `PairCollator`'s lookup and tokenisation.

Each is reported per batch and as a % of batchmix's median step interval. Goal: < 1%.

    .venv/bin/python benchmarks/train_speed.py [--threads 1] [--batch-size 16] [--steps 8] [--rounds 2] [--profile]
        [--unfreeze] [--st-optim adamw_torch] [--batchmix-as-built] [--override data.pretokenize=true]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import os
import platform
import pstats
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # ST's untimed model-card pass draws a progress bar per fit

import torch  # noqa: E402
import bench_common  # noqa: E402

from batchmix.core.errors import BatchmixError  # noqa: E402

GOAL_RATIO = 1.0  # issue: batchmix pairs/s / ST pairs/s >= 1.0
GOAL_SAMPLER = 0.01  # issue: time producing batches / step time < 1 %


# --- step clocks -----------------------------------------------------------------------------
@dataclass
class StepTimes:
    """Wall clock (perf_counter) at the start and end of every optimizer step, the process's CPU
    time (process_time) at each end, and the torch thread counts seen."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    cpu_ends: list[float] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    optimizer: str = "?"  # what actually stepped, e.g. "AdamW(fused)"
    eval_mode_at_first_step: int = 0  # encoder submodules in eval mode (dropout off) when training began

    def begin(self) -> None:
        self.starts.append(time.perf_counter())
        self.threads.add(torch.get_num_threads())

    def end(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # a GPU step has ended when its kernels have, not when they were queued
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())


@dataclass(frozen=True)
class RoundResult:
    pairs_per_s: float
    median_interval_s: float  # end of step i-1 -> end of step i (data loading included)
    median_compute_s: float  # batch start -> batch end (forward, backward, optimizer, logging)
    fastest_interval_s: float  # the least disturbed step: robust to another process taking a core
    pairs_per_cpu_s: float  # pairs per CPU-second of this process: what waiting for a core does not change
    first_loss: float


def summarise(times: StepTimes, warmup: int, batch_size: int, first_loss: float) -> RoundResult:
    steps = len(times.ends) - warmup
    if steps < 1 or len(times.starts) != len(times.ends):
        raise RuntimeError(f"step clock saw {len(times.starts)} starts / {len(times.ends)} ends; expected > {warmup}")
    wall = times.ends[-1] - times.ends[warmup - 1]
    intervals = [b - a for a, b in zip(times.ends[warmup - 1 : -1], times.ends[warmup:])]
    compute = [e - s for s, e in zip(times.starts[warmup:], times.ends[warmup:])]
    cpu = times.cpu_ends[-1] - times.cpu_ends[warmup - 1]
    return RoundResult(steps * batch_size / wall, statistics.median(intervals), statistics.median(compute), min(intervals),
                       steps * batch_size / cpu, first_loss)


# --- the batchmix side -----------------------------------------------------------------------
def compose_config(args: argparse.Namespace):
    from hydra import compose, initialize_config_dir

    from batchmix.config import CONF_DIR

    overrides = [
        "model=me5_small",
        f"data.batch_size={args.batch_size}",
        f"model.query_max_length={args.max_length}",
        f"model.passage_max_length={args.max_length}",
        f"model.freeze_embeddings={'false' if args.unfreeze else 'true'}",
        f"seed={args.seed}",
        *(["trainer=gpu"] if args.device == "cuda" else []),
        f"trainer.precision={args.precision}",
        f"data.num_workers={args.workers}",
        *([f"model.name_or_path={args.model_dir}"] if args.model_dir else []),
        *args.override,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def lightning_clock(times: StepTimes, train_mode: bool):
    """A Lightning callback stamping `times` (lightning is imported here, after the thread count is set).

    At the first batch, after every `on_train_start` hook has run, it records how many encoder
    submodules are in eval mode. With `train_mode` it then switches them to train mode, for parity
    with HF's Trainer, which calls `model.train()`.
    """
    import lightning as L

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not times.starts:
                encoders = {id(e): e for e in (pl_module.query_encoder, pl_module.passage_encoder)}.values()
                times.eval_mode_at_first_step = sum(not m.training for e in encoders for m in e.modules())
                if train_mode:
                    for encoder in encoders:
                        encoder.train()
            times.begin()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            times.end()

    return Clock()


@dataclass
class BatchmixSetup:
    cfg: Any
    groups: Any
    ratio: Any

    def sampler(self):
        from batchmix.mixing.sampler import HybridBatchSampler

        cfg = self.cfg
        return HybridBatchSampler(
            [self.groups.langs_of(i) for i in range(len(self.groups))], cfg.data.batch_size, self.ratio,
            batches_per_epoch=cfg.data.batches_per_epoch, mono_mode=cfg.data.sampler.mono_mode, seed=cfg.seed,
        )

    def collator(self, tokenizer):
        """As train.py builds it (with `--override data.pretokenize=true`, from the token cache)."""
        from batchmix.data.datamodule import PairCollator
        from batchmix.data.pretokenize import pretokenize

        m = self.cfg.model
        text = dict(query_prefix=m.query_prefix, passage_prefix=m.passage_prefix,
                    query_max_length=m.query_max_length, passage_max_length=m.passage_max_length)
        cached = pretokenize(self.groups, tokenizer, **text) if self.cfg.data.get("pretokenize", False) else None
        return PairCollator(self.groups, tokenizer, **text, pretokenized=cached)

    def datamodule(self, tokenizer):
        from batchmix.data.datamodule import HybridDataModule

        return HybridDataModule(self.groups, self.sampler(), self.collator(tokenizer), num_workers=self.cfg.data.num_workers)


def batchmix_setup(args: argparse.Namespace) -> BatchmixSetup:
    from batchmix.run.preflight import validate
    from batchmix.data.load import load_splits

    cfg = compose_config(args)
    ratio = validate(cfg)
    groups, _ = load_splits(cfg.data)
    return BatchmixSetup(cfg, groups, ratio)


def describe_optimizer(optimizer) -> str:
    """Class and implementation of a torch optimizer: fused kernel, foreach, or the per-tensor loop."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate / Lightning wrappers
    d = getattr(optimizer, "defaults", {})
    impl = "fused" if d.get("fused") else "foreach" if d.get("foreach") else "for-loop"
    return f"{type(optimizer).__name__} ({impl})"


def trainable(params) -> int:
    return sum(p.numel() for p in params if p.requires_grad)


def build_batchmix_module(setup: BatchmixSetup):
    import lightning as L

    from batchmix.losses import build_loss
    from batchmix.models.factory import build_dual_encoder

    L.seed_everything(setup.cfg.seed, workers=True, verbose=False)
    return build_dual_encoder(setup.cfg.model, build_loss(setup.cfg.loss), setup.cfg.optim)


def run_batchmix(setup: BatchmixSetup, total_steps: int, times: StepTimes, train_mode: bool) -> float:
    """One fresh `Trainer.fit` of `total_steps` steps; returns the first step's loss.

    `train_mode`: make sure the encoder trains in train mode (see `lightning_clock`).
    """
    from hydra.utils import instantiate

    module = build_batchmix_module(setup)
    datamodule = setup.datamodule(module.tokenizer)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        trainer = instantiate(
            setup.cfg.trainer, default_root_dir=tmp, max_steps=total_steps, max_epochs=-1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, callbacks=[lightning_clock(times, train_mode)],
        )
        trainer.fit(module, datamodule=datamodule)
    times.optimizer = describe_optimizer(trainer.optimizers[0])
    return module.history[0]["loss"]


# --- the sentence-transformers side ----------------------------------------------------------
def st_dataset(setup: BatchmixSetup, total_steps: int):
    """The (anchor, positive) texts of batchmix's first `total_steps` planned batches, prefixes applied."""
    from datasets import Dataset

    sampler = setup.sampler()
    plan = sampler.plan_epoch(sampler.epoch)
    if len(plan) < total_steps:
        raise BatchmixError(
            f"--warmup + --steps = {total_steps} exceeds the {len(plan)} batches of one epoch at batch size "
            f"{setup.cfg.data.batch_size}; lower --steps"
        )
    m, pairs = setup.cfg.model, setup.groups.pairs
    refs = [ref for batch in plan[:total_steps] for ref in batch]
    return Dataset.from_dict({
        "anchor": [m.query_prefix + pairs[r.group][r.query_lang].query for r in refs],
        "positive": [m.passage_prefix + pairs[r.group][r.positive_lang].positive for r in refs],
    })


def _in_order_batches(dataset, batch_size: int, drop_last: bool, **_ignored):
    """ST's `batch_sampler` hook: consecutive rows, no shuffle, so ST sees batchmix's batches."""
    from torch.utils.data import BatchSampler, SequentialSampler

    return BatchSampler(SequentialSampler(dataset), batch_size, drop_last)


def build_st_model(setup: BatchmixSetup, model_dir: str, max_length: int, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(model_dir, max_seq_length=max_length)
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()], device=device
    )
    hf = transformer.auto_model
    if getattr(hf, "pooler", None) is not None:
        hf.pooler.requires_grad_(False)  # unused by mean pooling; batchmix freezes it too
    if setup.cfg.model.freeze_embeddings:
        hf.get_input_embeddings().weight.requires_grad_(False)  # = batchmix's freeze_embeddings
    return model


def run_st(setup: BatchmixSetup, model_dir: str, dataset, total_steps: int, times: StepTimes, optim: str | None,
           device: str = "cpu", precision: str = "32-true", workers: int = 0) -> float:
    """One fresh `SentenceTransformerTrainer.train` of `total_steps` steps; returns the first step's loss."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import PrinterCallback, TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            times.begin()

        def on_step_end(self, args, state, control, **kwargs):
            times.end()

    cfg = setup.cfg
    torch.manual_seed(cfg.seed)
    model = build_st_model(setup, model_dir, cfg.model.query_max_length, device)
    loss = MultipleNegativesRankingLoss(model, scale=1.0 / cfg.loss.temperature)
    with tempfile.TemporaryDirectory(prefix="bench-st-") as tmp:
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp, max_steps=total_steps, per_device_train_batch_size=cfg.data.batch_size,
            learning_rate=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, warmup_steps=cfg.optim.warmup_ratio,
            lr_scheduler_type="linear", max_grad_norm=cfg.trainer.gradient_clip_val, seed=cfg.seed,
            report_to="none", eval_strategy="no", save_strategy="no", logging_steps=1, disable_tqdm=True,
            dataloader_num_workers=workers, dataloader_drop_last=False, use_cpu=device == "cpu", batch_sampler=_in_order_batches,
            bf16=precision.startswith("bf16"), fp16=precision.startswith("16"),
            **({"optim": optim} if optim else {}),
        )
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset, loss=loss, callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # disable_tqdm's stand-in prints every log line
        trainer.train()
    times.optimizer = describe_optimizer(trainer.optimizer)
    return float(next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry))


@dataclass(frozen=True)
class SameInputs:
    """What `check_same_inputs` compared on the first batch."""

    loss_batchmix: float
    loss_st: float
    trainable_batchmix: int
    trainable_st: int


def check_same_inputs(setup: BatchmixSetup, model_dir: str, dataset) -> SameInputs:
    """Same tokens, same loss (eval mode, no dropout) and same trainable parameters on the first batch.

    Catches a mismatch of prefixes, truncation, padding, pooling, normalisation, loss scale or
    frozen parameters before any time is measured.
    """
    cfg = setup.cfg
    module = build_batchmix_module(setup).eval()
    batch = setup.collator(module.tokenizer)(setup.sampler().plan_epoch(0)[0])
    st_model = build_st_model(setup, model_dir, cfg.model.query_max_length).eval()
    rows = dataset[: cfg.data.batch_size]
    features = [st_model.preprocess(rows["anchor"]), st_model.preprocess(rows["positive"])]
    for column, tower, theirs in (("anchor", "query", features[0]), ("positive", "positive", features[1])):
        for key in ("input_ids", "attention_mask"):
            if not torch.equal(batch[tower][key], theirs[key]):
                raise RuntimeError(f"batchmix and ST tokenise the first batch's {column} differently ({key})")
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    with torch.no_grad():
        q, p = module.encode(batch["query"], "query"), module.encode(batch["positive"], "passage")
        ours = float(module.loss_fn(q, p).loss)
        theirs = float(MultipleNegativesRankingLoss(st_model, scale=1.0 / cfg.loss.temperature)(features, None))
    if abs(ours - theirs) > 1e-4:
        raise RuntimeError(f"first-batch loss differs: batchmix {ours:.6f}, ST MNRL {theirs:.6f}")
    result = SameInputs(ours, theirs, trainable(module.parameters()), trainable(st_model.parameters()))
    if result.trainable_batchmix != result.trainable_st:
        raise RuntimeError(f"trainable parameters differ: batchmix {result.trainable_batchmix:,}, ST {result.trainable_st:,}")
    return result


# --- sampler overhead ------------------------------------------------------------------------
def sampler_overhead(setup: BatchmixSetup, repeats: int) -> tuple[float, float, int]:
    """Seconds per batch over one epoch: (sampler only, sampler + collate), best of `repeats`; #batches."""
    from batchmix.models.loading import load_tokenizer

    tokenizer = load_tokenizer(setup.cfg.model.name_or_path)
    only, with_collate, n = [], [], 0
    for _ in range(repeats):
        sampler = setup.sampler()
        start = time.perf_counter()
        n = sum(1 for _ in sampler)
        only.append((time.perf_counter() - start) / n)
        loader = setup.datamodule(tokenizer).train_dataloader()
        start = time.perf_counter()
        n = sum(1 for _ in loader)
        with_collate.append((time.perf_counter() - start) / n)
    return min(only), min(with_collate), n


# --- profile ---------------------------------------------------------------------------------
def profile_batchmix(setup: BatchmixSetup, total_steps: int, top: int, train_mode: bool) -> str:
    """cProfile of one batchmix fit (model build excluded), by cumulative and by own time."""
    times = StepTimes()
    from hydra.utils import instantiate

    module = build_batchmix_module(setup)
    datamodule = setup.datamodule(module.tokenizer)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        trainer = instantiate(
            setup.cfg.trainer, default_root_dir=tmp, max_steps=total_steps, max_epochs=-1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, callbacks=[lightning_clock(times, train_mode)],
        )
        profiler.enable()
        trainer.fit(module, datamodule=datamodule)
        profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return stream.getvalue()


# --- main ------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step, both sides (default 16)")
    parser.add_argument("--max-length", type=int, default=128, help="max tokens per text, both sides and towers (default 128)")
    parser.add_argument("--warmup", type=int, default=2, help="steps per fit discarded before timing (default 2)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per fit (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each builds and trains both sides once (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads for both sides (default 1: steadier on a shared 2-core machine)")
    parser.add_argument("--unfreeze", action="store_true", help="train the word embeddings too, on both sides")
    parser.add_argument("--batchmix-as-built", action="store_true",
                        help="never switch batchmix's encoder to train mode (if it starts training in eval mode, dropout stays off)")
    parser.add_argument("--st-optim", default=None,
                        help="HF `optim` for the ST side (default: its own, adamw_torch_fused; adamw_torch = batchmix's torch.optim.AdamW)")
    parser.add_argument("--sampler-repeats", type=int, default=3, help="epochs timed for the sampler overhead (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: batchmix with trainer=gpu, ST on the GPU (use with --precision bf16-mixed)")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"],
                        help="Lightning precision for batchmix; ST gets the matching bf16 / fp16 flag (default 32-true)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader worker processes, both sides (batchmix data.num_workers, ST dataloader_num_workers)")
    parser.add_argument("--model-dir", default=None,
                        help="a local HF model directory instead of the embedded multilingual-e5-small (same for both sides)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one batchmix fit")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for the batchmix config, e.g. ratio.mono=1.0")
    args = parser.parse_args()
    for name in ("batch_size", "max_length", "warmup", "steps", "rounds", "threads", "sampler_repeats"):
        if getattr(args, name) < 1:
            raise BatchmixError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BatchmixError("--device cuda: torch sees no CUDA device here; use --device cpu")
    torch.set_num_threads(args.threads)

    import lightning
    import sentence_transformers
    import transformers

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU banners per fit
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar per model build

    from batchmix.models.loading import EMBEDDED, resolve_name

    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0])] + sys.argv[1:])
    load_before = os.getloadavg()
    model_dir = args.model_dir or resolve_name(EMBEDDED)
    setup = batchmix_setup(args)
    total = args.warmup + args.steps
    dataset = st_dataset(setup, total)
    same = check_same_inputs(setup, model_dir, dataset)
    print(f"data: {setup.cfg.data.name} train split, {len(setup.groups)} ids, ratio {setup.ratio.label()}; "
          f"{total} batches of {args.batch_size} pairs per fit ({args.warmup} warm-up + {args.steps} timed), "
          f"max length {args.max_length}, word embeddings {'trained' if args.unfreeze else 'frozen'}")
    print(f"same inputs: first batch tokenises identically; its loss (eval mode) batchmix {same.loss_batchmix:.6f}, "
          f"ST MNRL {same.loss_st:.6f}; trainable parameters {same.trainable_batchmix:,} on both sides")

    results: dict[str, list[RoundResult]] = {"batchmix": [], "st": []}
    threads: dict[str, set[int]] = {"batchmix": set(), "st": set()}
    eval_mode_at_start = 0
    optimizers: dict[str, str] = {}
    runners = {
        "batchmix": lambda times: run_batchmix(setup, total, times, train_mode=not args.batchmix_as_built),
        "st": lambda times: run_st(setup, model_dir, dataset, total, times, args.st_optim, args.device, args.precision, args.workers),
    }
    for r in range(args.rounds):
        for side, run in runners.items():
            times = StepTimes()
            first_loss = run(times)
            threads[side] |= times.threads
            optimizers[side] = times.optimizer
            if side == "batchmix":
                eval_mode_at_start = max(eval_mode_at_start, times.eval_mode_at_first_step)
            results[side].append(summarise(times, args.warmup, args.batch_size, first_loss))
            print(f"  round {r + 1} {side:<9} {results[side][-1].pairs_per_s:7.2f} pairs/s  "
                  f"(median step {results[side][-1].median_interval_s:.3f} s)", flush=True)
            gc.collect()

    only_s, collate_s, n_batches = sampler_overhead(setup, args.sampler_repeats)

    best = {side: max(rs, key=lambda x: x.pairs_per_s) for side, rs in results.items()}
    ratio = best["batchmix"].pairs_per_s / best["st"].pairs_per_s
    fastest = {side: min(x.fastest_interval_s for x in rs) for side, rs in results.items()}
    round_ratios = [a.pairs_per_s / b.pairs_per_s for a, b in zip(results["batchmix"], results["st"])]
    per_cpu = {side: max(x.pairs_per_cpu_s for x in rs) for side, rs in results.items()}
    step_s = best["batchmix"].median_interval_s
    names = {"batchmix": "batchmix (Lightning fit)", "st": "sentence-transformers + MNRL"}
    print()
    print(f"training throughput, {'multilingual-e5-small' if not args.model_dir else args.model_dir} {args.precision} "
          f"on {torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'}, batch {args.batch_size}, max length {args.max_length}, "
          f"{same.trainable_batchmix:,} trainable parameters each, {args.threads} torch thread(s) (best of {args.rounds} rounds)")
    print(f"  {'':<30} {'pairs/s':>8} {'median step s':>14} {'of which compute s':>19} {'fastest step s':>15} "
          f"{'pairs/CPU-s':>12}   pairs/s per round")
    for side, name in names.items():
        b = best[side]
        print(f"  {name:<30} {b.pairs_per_s:>8.2f} {b.median_interval_s:>14.3f} {b.median_compute_s:>19.3f} "
              f"{fastest[side]:>15.3f} {per_cpu[side]:>12.2f}   {', '.join(f'{x.pairs_per_s:.2f}' for x in results[side])}")
    print(f"  {'ratio batchmix / ST':<30} {ratio:>8.3f}   goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'NOT met'}"
          f"   (per round: {', '.join(f'{x:.3f}' for x in round_ratios)}; "
          f"fastest step: {fastest['st'] / fastest['batchmix']:.3f}; per CPU-second: {per_cpu['batchmix'] / per_cpu['st']:.3f})")
    print(f"  optimizer: batchmix {optimizers['batchmix']}; ST {optimizers['st']} "
          f"({'--st-optim ' + args.st_optim if args.st_optim else 'its default'})")
    dropout_off = bool(eval_mode_at_start) and args.batchmix_as_built
    if eval_mode_at_start:
        print(f"  note: batchmix's encoder began training with {eval_mode_at_start} submodules in eval mode (dropout off; "
              f"from_pretrained's default, kept by Lightning): "
              + ("measured so (--batchmix-as-built)" if dropout_off else "switched to train mode here, for parity with ST"))
    print(f"  first-step training loss (same batch; dropout {'off' if dropout_off else 'on'} in batchmix, masks drawn per side): batchmix {results['batchmix'][0].first_loss:.4f}, "
          f"ST {results['st'][0].first_loss:.4f}")
    print()
    print(f"sampler overhead, per batch (best of {args.sampler_repeats} epochs of {n_batches} batches), "
          f"/ batchmix's median step {step_s:.3f} s")
    for label, s in (("HybridBatchSampler (plan + iterate)", only_s), ("sampler + PairCollator (DataLoader)", collate_s)):
        share = s / step_s
        print(f"  {label:<38} {1000 * s:8.3f} ms  {100 * share:6.3f}%   goal < {100 * GOAL_SAMPLER:g}%: "
              f"{'met' if share < GOAL_SAMPLER else 'NOT met'}")
    print()
    print("machine")
    print(f"  cpus {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), torch threads seen in steps: "
          f"batchmix {sorted(threads['batchmix'])}, ST {sorted(threads['st'])}; torch {torch.__version__}, "
          f"lightning {lightning.__version__}, transformers {transformers.__version__}, "
          f"sentence-transformers {sentence_transformers.__version__}, python {platform.python_version()}, {platform.machine()}")
    bench_common.print_provenance(load_before, command)

    if args.profile:
        print()
        print(f"cProfile of one batchmix fit ({total} steps)")
        print(profile_batchmix(setup, total, top=30, train_mode=not args.batchmix_as_built))
    return 0


if __name__ == "__main__":
    bench_common.run(main)
