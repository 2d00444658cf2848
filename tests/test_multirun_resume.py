"""A Hydra basic multirun killed during its second point, rerun as the same command into the same sweep
dir: the finished point is skipped, the interrupted one resumes from its checkpoint, the last one runs;
no point is lost or trained twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from batchmix.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
STEPS = 10
POINTS = ("0.0", "0.5", "1.0")
SWEEP = [
    "model=tiny", "model.freeze_embeddings=true", "data.languages=[en,de,es]", "data.batch_size=8",
    f"data.batches_per_epoch={STEPS}", "seed=3", "save_model=false", "logger=csv", "eval.before=false",
    "checkpoint.every_n_steps=1",
]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def launch(sweep_dir: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), "-m", f"ratio.mono={','.join(POINTS)}", *SWEEP, f"hydra.sweep.dir={sweep_dir}"],
            cwd=sweep_dir.parent, env=ENV, stdout=out, stderr=subprocess.STDOUT,
        )


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


def planned_types(mono: str) -> list[str]:
    """The batch-type order the sampler plans for one point, computed without training."""
    from batchmix.data.load import load_splits
    from batchmix.mixing.ratio import Ratio
    from batchmix.mixing.sampler import HybridBatchSampler

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*SWEEP, f"ratio.mono={mono}"])
    groups, _ = load_splits(cfg.data)
    ratio = Ratio.from_mapping(OmegaConf.to_container(cfg.ratio, resolve=True))
    sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], cfg.data.batch_size, ratio,
                                 batches_per_epoch=STEPS, seed=cfg.seed)
    return [batch[0].batch_type for batch in sampler.plan_epoch(0)]


@pytest.mark.slow
def test_killed_multirun_resumes_without_lost_or_repeated_points(tmp_path, xquad_root):
    sweep, log = tmp_path / "sweep", tmp_path / "log.txt"
    proc = launch(sweep, log)
    deadline = time.monotonic() + 240
    while (checkpoint_step(sweep / "1" / "checkpoints" / "last.ckpt") or 0) < 3:  # point 2 is training
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "point 2 never reached step 3"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # a dead node: no chance to clean up
    proc.wait()
    finished = json.loads((sweep / "0" / "metrics.json").read_text())
    finished_mtime = (sweep / "0" / "metrics.json").stat().st_mtime_ns
    killed_at = checkpoint_step(sweep / "1" / "checkpoints" / "last.ckpt")
    assert killed_at < STEPS and not (sweep / "1" / "metrics.json").exists() and not (sweep / "2").exists()

    proc = launch(sweep, log)  # the same command, the same sweep dir
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert text.count(f"already complete: {sweep / '0'}") == 1
    assert f"resuming from step {killed_at} of {sweep / '1' / 'checkpoints' / 'last.ckpt'}" in text

    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == finished_mtime  # skipped, not retrained
    assert json.loads((sweep / "0" / "metrics.json").read_text()) == finished
    for num, mono in enumerate(POINTS):
        run = sweep / str(num)
        assert OmegaConf.load(run / "config.yaml").ratio.mono == float(mono)
        history = pd.read_csv(run / "history.csv")
        assert list(history["step"]) == list(range(STEPS))  # every step once: none lost, none repeated
        assert list(history["batch_type"]) == planned_types(mono)
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["train/steps"] == STEPS and "map/multi" in metrics
    runs = pd.read_csv(sweep / "report" / "runs.csv")  # the sweep's report sees each point exactly once
    assert len(runs) == 3
    assert not list(sweep.rglob(".*.tmp"))
    assert Counter(pd.read_csv(sweep / "1" / "history.csv")["batch_type"]) == {"mono": 5, "cross": 5}
