"""What `model.compile=true` (torch.compile of the encoder, inductor, dynamic shapes) does to wall time,
end to end, compile time included: the rule is that it becomes the default only where wall time drops
by at least 10 %.

Two workloads, each run as a whole process without and with `model.compile=true`, one after the other
(off, on, off, on, ... for `--rounds`), best of the rounds:

- **a demo-length run**: `python train.py` as `make demo` runs it (`trainer.precision` as the demo
  picks it for this CPU, `--precision` to set it), W&B off (`logger=none`), into a temporary run dir;
- **encoding all of XQuAD-R** (13,090 questions + 13,014 candidate sentences, the embedded
  multilingual-e5-small, batch 64) in fp32, the precision `eval.py` scores a zero-shot model in.

The embedded model is converted into `$BATCHMIX_CACHE` before the first timing, so no side pays for it.
Printed: seconds of each side per round and the change of the best, with the verdict of the 10 % rule.

    .venv/bin/python benchmarks/compile_effect.py [--rounds 1] [--precision bf16-mixed] [--skip-demo] [--skip-encode]
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

import bench_common  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RULE = 0.10  # the least drop in wall time that makes compiling the default


def encode_all(compile_: bool) -> None:
    """The child process of the encoding workload: build, (compile,) encode every text of XQuAD-R."""
    import torch
    from omegaconf import OmegaConf

    from batchmix.config import CONF_DIR
    from batchmix.data.lareqa import load_lareqa
    from batchmix.data.root import resolve_data_root
    from batchmix.models.factory import build_dual_encoder

    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "me5_small.yaml"))
    module = build_dual_encoder({**cfg, "compile": compile_}).eval()
    corpus = load_lareqa(resolve_data_root(None, "xquad-r"))
    with torch.inference_mode():
        module.encode_texts([q for ls in corpus.languages.values() for q in ls.questions], "query", 64, desc=False)
        module.encode_texts([c for ls in corpus.languages.values() for c in ls.candidates], "passage", 64, desc=False)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    return seconds


def demo_precision() -> str:
    """What `make demo` passes as trainer.precision on this machine (the Makefile's DEMO_PRECISION)."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "demo-precision"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "32-true"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="off/on pairs per workload; the best of each side is compared")
    parser.add_argument("--precision", default=None, help="the demo run's trainer.precision (default: what make demo picks)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-encode", action="store_true")
    parser.add_argument("--encode-child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.encode_child:
        encode_all(args.encode_child == "on")
        return 0
    load_before = os.getloadavg()
    from batchmix.models.embedded.e5 import ensure_embedded_model

    ensure_embedded_model()  # converted once, outside every timing
    precision = args.precision or demo_precision()
    workloads = {}
    if not args.skip_demo:
        workloads[f"demo run (python train.py trainer.precision={precision} logger=none)"] = lambda on, tmp: [
            sys.executable, "train.py", f"trainer.precision={precision}", "logger=none", f"model.compile={str(on).lower()}",
            f"hydra.run.dir={tmp}/run-{'on' if on else 'off'}-{time.monotonic_ns()}"]
    if not args.skip_encode:
        workloads["encoding all of XQuAD-R, fp32"] = lambda on, tmp: [
            sys.executable, str(Path(__file__).resolve()), "--encode-child", "on" if on else "off"]
    env = dict(os.environ)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        for name, command in workloads.items():
            seconds = {False: [], True: []}
            for r in range(args.rounds):
                for on in (False, True):
                    seconds[on].append(timed(command(on, tmp), env))
                    print(f"  {name}, round {r + 1}, model.compile={str(on).lower()}: {seconds[on][-1]:.0f} s", flush=True)
            results[name] = (min(seconds[False]), min(seconds[True]))
    print(f"model.compile=true, end to end with compile time (best of {args.rounds}); the default follows a >= {RULE:.0%} drop:")
    for name, (off, on) in results.items():
        change = on / off - 1
        verdict = "meets the rule" if -change >= RULE else "does not meet the rule"
        print(f"  {name}: off {off:.0f} s, on {on:.0f} s, {change:+.1%} ({verdict})")
    bench_common.print_provenance(load_before, "python " + " ".join(shlex.quote(a) for a in sys.argv))
    return 0


if __name__ == "__main__":
    bench_common.run(main)
