"""GradCache memory: peak memory of one training step at batch 32, at 256, and at 256 with `loss.cache_chunk`.

This script compares three configurations of one `DualEncoder` training step:

- `batch 32`: the first 32 pairs;
- `batch 256`: 256 pairs in one graph;
- `batch 256, cache_chunk=32`: the same 256 pairs through GradCache,
  `build_dual_encoder(model_cfg, build_loss({"_target_": "batchmix.losses.InfoNCELoss", "temperature": 0.05, "cache_chunk": 32}), optim_cfg)`.

The step is `DualEncoder.training_step` (forward and the InfoNCE loss) followed by
`loss.backward()`; under GradCache that backward runs the cached chunk passes. It is in train mode,
so dropout is on. There is no optimizer step, because the optimizer's state does not depend on the
batch.

**Data.** Real XQuAD-R training pairs: the first batch `HybridBatchSampler` plans at batch 256
(seed 0), tokenised once by `PairCollator`. The batch-32 step takes rows 0-31 of those padded
tensors, and GradCache's chunks are slices of the same tensors. So all three steps have the same
sequence lengths, and the comparison isolates the batch size.

**Model.**

- `--model tiny` is the default: the test-suite's random-init 2-layer BERT with the XLM-R
  vocabulary. Its steps take seconds on a CPU.
- `--model embedded` is multilingual-e5-small. On a CPU a 256-pair step needs gigabytes and tens of
  seconds (about 0.4 MiB of activations per token), so use it with `--device cuda`, or with
  `--max-length 32` on a CPU.
- The word embeddings are frozen by default, as `model=me5_small` has them. Then the numbers are
  activations, the thing GradCache bounds.
- `--train-embeddings` trains them too. The step then also holds the embedding matrix's dense
  gradient, 30.5 MiB for the tiny model. GradCache's per-chunk `torch.autograd.grad` holds a
  second full set of gradients while adding it into `.grad`.

**Measurement.** Each configuration runs in its own fresh subprocess. That process loads the model
and the batch, takes one 2-pair warm-up step (the first backward in a process lazily allocates
kernel workspaces and autograd state, which belong to no batch size), drops the gradients, and then
measures the step.

- CPU: the number is the process's peak RSS after the step minus its peak RSS just before it. This
  is the step's high-water mark of resident memory above the loaded model and batch: activations,
  gradients and temporaries.
  - Before the step, glibc's free heap is trimmed and the kernel's high-water mark is reset to the
    current RSS (writing 5 to /proc/self/clear_refs, Linux >= 4.0). A transient peak while loading
    therefore cannot hide part of the step. The output says if that reset was unavailable.
  - The peak is read as VmHWM, the value behind ru_maxrss. ru_maxrss itself would report the
    forking parent's peak: exec() keeps it in signal->maxrss.
  - `MALLOC_MMAP_THRESHOLD_=65536` gives every tensor its own mapping. Without it, a step's
    tensors could reuse heap pages that loading left resident, and would not show in RSS.
  - The weights are copied into ordinary memory before the baseline. `from_pretrained` can leave
    them backed by the mmapped safetensors file and paged in on first touch, and GradCache's
    no-grad pass over all 256 pairs faulted in about 170 MiB of embedding rows that the step
    would otherwise have been charged for.
- CUDA (`--device cuda`): the number is `torch.cuda.max_memory_allocated()` during the step minus
  `memory_allocated()` before it, with the peak statistics reset first.

    .venv/bin/python benchmarks/gradcache_memory.py [--model tiny|embedded] [--device cpu|cuda] [--chunk 32]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import bench_common  # noqa: E402

from batchmix.core.errors import BatchmixError  # noqa: E402

MODEL_CONFIGS = {"tiny": "tiny", "embedded": "me5_small"}  # --model -> conf/model/<name>.yaml
GOAL = 1.5  # issue: peak memory of batch 256 with GradCache "close to" batch 32; flagged beyond 1.5x


@dataclass(frozen=True)
class Config:
    label: str
    batch: int
    chunk: int | None


@dataclass(frozen=True)
class Measurement:
    peak_mib: float  # the step's high-water mark above the loaded state
    baseline_mib: float  # resident (CPU) / allocated (CUDA) after loading the model and the batch
    seconds: float
    loss: float
    grad_norm: float
    hwm_reset: bool  # CPU: whether the kernel high-water mark could be reset before the step
    gradient_mib: float  # size of one full set of the trainable parameters' gradients


# --- the batch (parent) ----------------------------------------------------------------------
def compose_model_config(args: argparse.Namespace):
    from hydra import compose, initialize_config_dir

    from batchmix.config import CONF_DIR

    overrides = [f"model={MODEL_CONFIGS[args.model]}", f"data.batch_size={args.batch}", f"seed={args.seed}",
                 f"model.freeze_embeddings={'false' if args.train_embeddings else 'true'}"]
    if args.max_length is not None:
        overrides += [f"model.query_max_length={args.max_length}", f"model.passage_max_length={args.max_length}"]
    overrides += args.override
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def write_batch(cfg, path: Path) -> dict:
    """Tokenise the sampler's first batch of `data.batch_size` pairs; save it; return its shape."""
    from batchmix.run.preflight import validate
    from batchmix.data.datamodule import PairCollator
    from batchmix.data.load import load_splits
    from batchmix.models.loading import load_tokenizer
    from batchmix.mixing.sampler import HybridBatchSampler

    ratio = validate(cfg)
    groups, _ = load_splits(cfg.data)
    sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], cfg.data.batch_size, ratio,
                                 mono_mode=cfg.data.sampler.mono_mode, seed=cfg.seed)
    m = cfg.model
    collator = PairCollator(groups, load_tokenizer(m.name_or_path), query_prefix=m.query_prefix, passage_prefix=m.passage_prefix,
                            query_max_length=m.query_max_length, passage_max_length=m.passage_max_length)
    batch = collator(sampler.plan_epoch(0)[0])
    torch.save(batch, path)
    return {"batch_type": batch["batch_type"], "query_tokens": batch["query"]["input_ids"].shape[1],
            "passage_tokens": batch["positive"]["input_ids"].shape[1]}


# --- one configuration (child process) -------------------------------------------------------
def _trim_heap() -> None:
    """Return the C heap's free pages to the OS (glibc `malloc_trim`), so memory freed while loading
    is not silently reused by the step without raising RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water_mark() -> bool:
    """Make the kernel's peak RSS (VmHWM, what ru_maxrss reports) equal the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, the kernel's high-water mark behind ru_maxrss.

    Not ru_maxrss itself: Linux reports max(VmHWM, signal->maxrss), and exec() stores the forking
    parent's peak in signal->maxrss, so a child of this (large) driver would see the driver's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _slice(batch: dict, n: int) -> dict:
    out = dict(batch)
    for key in ("query", "positive"):
        out[key] = {k: v[:n].contiguous() for k, v in batch[key].items()}
    for key in ("query_langs", "positive_langs", "ids"):
        out[key] = batch[key][:n]
    return out


def measure(cfg, config: Config, batch_path: Path, device: str, threads: int) -> Measurement:
    from batchmix.losses import build_loss
    from batchmix.models.factory import build_dual_encoder

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached: logging is a no-op
    torch.manual_seed(cfg.seed)
    loss_cfg = {"_target_": "batchmix.losses.InfoNCELoss", "temperature": cfg.loss.temperature, "cache_chunk": config.chunk}
    module = build_dual_encoder(cfg.model, build_loss(loss_cfg), cfg.optim).to(device).train()
    if device == "cpu":
        # from_pretrained may leave fp32 weights backed by the mmapped safetensors file, paged in
        # on first touch: a step reading embedding rows no earlier step read would count them as
        # its own memory. Copies in ordinary memory are resident before the baseline.
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                tensor.data = tensor.data.clone()
    full = torch.load(batch_path, weights_only=False)
    for key in ("query", "positive"):
        full[key] = {k: v.to(device) for k, v in full[key].items()}
    # A 2-pair step first: the first backward in a process also allocates lazily initialised
    # kernel workspaces and autograd-engine state, which belong to no batch size.
    module.training_step(_slice(full, 2), 0).backward()
    module.zero_grad(set_to_none=True)
    batch = _slice(full, config.batch)
    del full
    gc.collect()
    reset = True
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        _trim_heap()
        reset = _reset_high_water_mark()
        base = _peak_rss_mib() if reset else _rss_mib()
    start = time.perf_counter()
    loss = module.training_step(batch, 0)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = _peak_rss_mib() - base
    seconds = time.perf_counter() - start
    grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    grad_norm = float(torch.stack(grads).norm()) if grads else float("nan")
    gradient_mib = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad) / 2**20
    return Measurement(peak, base, seconds, float(loss.detach()), grad_norm, reset, gradient_mib)


def run_child(args: argparse.Namespace, config: Config, batch_path: Path) -> Measurement:
    """`measure` in a fresh interpreter, so no configuration inherits another's high-water mark."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(asdict(config)), "--batch-file", str(batch_path),
           "--model", args.model, "--device", args.device, "--threads", str(args.threads), "--seed", str(args.seed),
           "--batch", str(args.batch)]
    if args.max_length is not None:
        cmd += ["--max-length", str(args.max_length)]
    if args.train_embeddings:
        cmd += ["--train-embeddings"]
    if args.override:
        cmd += ["--override", *args.override]
    # Tensors of >= 64 KiB get their own mmap (and go back to the OS when freed): glibc's dynamic
    # threshold would otherwise serve them from heap memory already resident from loading, so a
    # step's allocations could fit in it without raising RSS.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{config.label}: the measuring subprocess failed (exit {proc.returncode}):\n{tail}")
    return Measurement(**json.loads(proc.stdout.strip().splitlines()[-1]))


# --- main ------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODEL_CONFIGS), default="tiny",
                        help="tiny (default: seconds on a CPU) or embedded multilingual-e5-small (use with --device cuda)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--small", type=int, default=32, help="the small batch (default 32)")
    parser.add_argument("--batch", type=int, default=256, help="the large batch (default 256)")
    parser.add_argument("--chunk", type=int, default=32, help="loss.cache_chunk for the large batch (default 32)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="query and passage max length (default: the model config's, e.g. tiny 32/64, me5_small 64/128)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each measuring process (default 1)")
    parser.add_argument("--train-embeddings", action="store_true",
                        help="train the word embeddings (default: frozen, as model=me5_small; see the docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", nargs="*", default=[],
                        help="extra Hydra overrides for the model config, e.g. model.freeze_embeddings=true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    cfg = compose_model_config(args)
    if args.worker is not None:
        result = measure(cfg, Config(**json.loads(args.worker)), args.batch_file, args.device, args.threads)
        print(json.dumps(asdict(result)))
        return 0

    if not 1 <= args.small <= args.batch or args.chunk < 1 or args.threads < 1:
        raise BatchmixError(f"need 1 <= --small ({args.small}) <= --batch ({args.batch}), --chunk >= 1 and --threads >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BatchmixError("--device cuda: torch sees no CUDA device here; use --device cpu")
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0])] + sys.argv[1:])
    load_before = os.getloadavg()
    configs = [
        Config(f"batch {args.small}", args.small, None),
        Config(f"batch {args.batch}", args.batch, None),
        Config(f"batch {args.batch}, cache_chunk={args.chunk}", args.batch, args.chunk),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-gradcache-") as tmp:
        batch_path = Path(tmp) / "batch.pt"
        shape = write_batch(cfg, batch_path)
        print(f"model {args.model} ({cfg.model.name_or_path}, word embeddings "
              f"{'trained' if args.train_embeddings else 'frozen'}), device {args.device}; first planned batch of {args.batch} "
              f"XQuAD-R pairs ({shape['batch_type']}), padded to {shape['query_tokens']} query / {shape['passage_tokens']} "
              f"passage tokens; every configuration uses these tensors (rows 0..n-1)", flush=True)
        results = {}
        for config in configs:
            results[config.label] = run_child(args, config, batch_path)
            r = results[config.label]
            print(f"  {config.label:<28} {r.peak_mib:9.1f} MiB  ({r.seconds:.1f} s)", flush=True)

    small = results[configs[0].label].peak_mib
    what = "max_memory_allocated - allocated before" if args.device == "cuda" else "peak RSS (VmHWM) after - before the step"
    print()
    print(f"peak memory of one training step (forward + backward), {what}; each in a fresh process")
    print(f"  {'configuration':<28} {'peak MiB':>9} {'x batch ' + str(args.small):>10} {'baseline MiB':>13} {'step s':>7} "
          f"{'loss':>7} {'grad norm':>10}")
    for config in configs:
        r = results[config.label]
        print(f"  {config.label:<28} {r.peak_mib:>9.1f} {r.peak_mib / small:>10.2f} {r.baseline_mib:>13.1f} {r.seconds:>7.2f} "
              f"{r.loss:>7.4f} {r.grad_norm:>10.4f}")
    cached = results[configs[2].label].peak_mib / small
    plain = results[configs[1].label].peak_mib / small
    print(f"  one full set of trainable gradients: {results[configs[0].label].gradient_mib:.1f} MiB")
    print(f"  GradCache at batch {args.batch}: {cached:.3f}x batch {args.small} (without: {plain:.2f}x); "
          f"close to batch {args.small} (<= {GOAL}x): {'yes' if cached <= GOAL else 'NO'}")
    print(f"  (loss and gradient norm of the two {args.batch}-pair steps differ by dropout's random masks only;")
    print("   their equality with dropout off is tested in tests/test_grad_cache.py)")
    if args.device == "cpu" and not all(r.hwm_reset for r in results.values()):
        print("  note: /proc/self/clear_refs was not writable: baselines are the current RSS, and a loading peak")
        print("  above it may hide part of a step's memory")
    print()
    print("machine")
    gpu = f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(f"  cpus {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}){gpu}, torch threads {args.threads}, "
          f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}")
    bench_common.print_provenance(load_before, command)
    return 0 if cached <= GOAL else 1


if __name__ == "__main__":
    bench_common.run(main)
