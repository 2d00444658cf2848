"""A NaN/inf loss stops training at once, names the step and the batch, and keeps the last good checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from batchmix.config import CONF_DIR
from batchmix.losses.infonce import InfoNCELoss
from batchmix.run.guards import NonFiniteLossError

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=6",
    "ratio.mono=0.4", "ratio.multi=0.3", "save_model=false", "logger=csv", "eval.before=false", "seed=4",
]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def planned_batch(cfg, step: int):
    """What the hybrid sampler feeds at `step` of epoch 0, computed independently of the run."""
    from batchmix.data.load import load_splits
    from batchmix.mixing.ratio import Ratio
    from batchmix.mixing.sampler import HybridBatchSampler

    groups, _ = load_splits(cfg.data)
    ratio = Ratio.from_mapping(OmegaConf.to_container(cfg.ratio, resolve=True))
    sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], cfg.data.batch_size, ratio,
                                 batches_per_epoch=cfg.data.batches_per_epoch, seed=cfg.seed)
    return sampler.plan_epoch(0)[step]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, xquad_root, monkeypatch):
    from batchmix.run.train import train

    bad_step, calls = 3, []
    original = InfoNCELoss.compute

    def nan_at_bad_step(self, q, p, batch):
        loss = original(self, q, p, batch)
        calls.append(float(loss.detach()))
        return loss * float("nan") if len(calls) == bad_step + 1 else loss

    monkeypatch.setattr(InfoNCELoss, "compute", nan_at_bad_step)
    cfg = compose_cfg(TINY + ["checkpoint.every_n_steps=1"])
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg, tmp_path)

    batch = planned_batch(cfg, bad_step)
    message = str(info.value)
    assert "\n" not in message
    ckpt_path = tmp_path / "checkpoints" / "last.ckpt"
    for fragment in (f"non-finite training loss (nan) at global step {bad_step}", f"batch {bad_step} of epoch 0",
                     f"a {batch[0].batch_type} batch", ",".join(sorted({r.query_lang for r in batch})),
                     f"last good checkpoint {ckpt_path} (step {bad_step})", "lower optim.lr"):
        assert fragment in message, (fragment, message)
    failed = json.loads((tmp_path / "failed.json").read_text())
    assert failed["error"] == message and failed["step"] == bad_step and failed["loss"] == "nan"
    assert failed["batch_type"] == batch[0].batch_type
    assert failed["query_langs"] == [r.query_lang for r in batch] and failed["positive_langs"] == [r.positive_lang for r in batch]
    assert failed["last_good_checkpoint"] == str(ckpt_path) and failed["last_good_step"] == bad_step

    # The checkpoint is the state after the last good step: nothing after the bad step was saved.
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == bad_step
    assert [h["step"] for h in ckpt["batchmix_history"]] == list(range(bad_step))
    assert all(math.isfinite(h["loss"]) for h in ckpt["batchmix_history"])
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point())
    assert ckpt["HybridDataModule"]["sampler"]["position"] == bad_step
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "history.csv").exists()


@pytest.mark.slow
def test_cli_nan_loss_is_one_line(tmp_path, xquad_root):
    """Through the CLI: a temperature so small that the logits overflow gives NaN at the first step."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, str(REPO / "train.py"), *TINY, "loss.temperature=1e-45", f"hydra.run.dir={tmp_path}/run"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("batchmix: error:")]
    assert len(lines) == 1, res.stderr[-3000:]
    assert "non-finite training loss (nan) at global step 0 (batch 0 of epoch 0)" in lines[0]
    assert "no checkpoint had been written yet" in lines[0] and "query languages" in lines[0]
    assert json.loads((tmp_path / "run" / "failed.json").read_text())["step"] == 0
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
