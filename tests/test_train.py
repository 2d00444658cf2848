"""The training recipe on real configs with tiny overrides: in-process, through the CLI, and as a sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.mixing.ratio import Ratio

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model=tiny",
    "data.languages=[en,de,es]",
    "data.batch_size=8",
    "data.batches_per_epoch=6",
    "save_model=false",
    "logger=csv",
]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], (0.5, 0.5, 0.0)),
        (["ratio.mono=0.2"], (0.2, 0.8, 0.0)),
        (["ratio.mono=0.2", "ratio.multi=0.3"], (0.2, 0.5, 0.3)),
        (["ratio=mono_only"], (1.0, 0.0, 0.0)),
        (["ratio=cross_only"], (0.0, 1.0, 0.0)),
        (["ratio=multi_only"], (0.0, 0.0, 1.0)),
        (["ratio.mono=0.1", "ratio.cross=0.2", "ratio.multi=0.7"], (0.1, 0.2, 0.7)),
    ],
)
def test_ratio_config_fills_cross_as_complement(overrides, expected):
    from omegaconf import OmegaConf

    cfg = compose_cfg(overrides)
    r = Ratio.from_mapping(OmegaConf.to_container(cfg.ratio, resolve=True))
    assert (r.mono, r.cross, r.multi) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["me5_small", "me5_small_hub", "xlmr_base", "labse", "mbert", "tiny"])
def test_model_configs_compose(name):
    cfg = compose_cfg([f"model={name}"])
    assert cfg.model.pooling in ("cls", "mean")
    assert "name_or_path" in cfg.model


@pytest.mark.slow
def test_train_in_process_writes_results(tmp_path, xquad_root):
    from batchmix.run.train import train

    cfg = compose_cfg(TINY + ["ratio.mono=0.5", "ratio.multi=0.25", "seed=3"])
    out = train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    before = json.loads((tmp_path / "metrics_before.json").read_text())
    for key in ("map/multi", "map/mono", "map/cross"):
        assert 0.0 <= metrics[key] <= 1.0 and 0.0 <= before[key] <= 1.0
    assert out["objective"] == metrics["val/map/multi"]  # chosen on the final validation, never on test
    hist = pd.read_csv(tmp_path / "history.csv")
    # 6 batches at 0.5 / 0.25 / 0.25 -> largest remainder 3 / 2 / 1 (ties: mono, cross, multi).
    assert Counter(hist["batch_type"]) == {"mono": 3, "cross": 2, "multi": 1}
    assert hist[["loss", "mse"]].notna().all().all()
    assert list(hist["step"]) == list(range(6))
    lightning_csv = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    for col in ("train/loss", "train/mse", "train/mono/loss", "train/mono/mse", "train/cross/mse", "train/multi/mse"):
        assert col in lightning_csv.columns
    assert (tmp_path / "config.yaml").exists()
    for tag in ("before", "final"):
        assert (tmp_path / "eval" / tag / "map_matrix.png").exists()
        assert json.loads((tmp_path / "eval" / tag / "metrics.json").read_text())["map/multi"] == (metrics if tag == "final" else before)["map/multi"]
    assert not (tmp_path / "eval" / "final" / "trec").exists()  # eval.trec=false in training by default
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # The sampler's position travels in the checkpoint (all 6 batches of epoch 0 consumed) ...
    assert ckpt["HybridDataModule"]["sampler"] == {"seed": 3, "epoch": 0, "position": 6}
    # ... and so does the loss history, so a resumed run keeps its curves.
    assert [h["batch_type"] for h in ckpt["batchmix_history"]] == list(hist["batch_type"])


def test_train_on_jsonl_pairs_with_distillation(tmp_path, xquad_root):
    """data.train_file (generic JSONL pairs) + loss=distill_mse (frozen teacher on the pivot language)."""
    from jsonl_rows import write_training_jsonl
    from batchmix.data.lareqa import load_lareqa
    from batchmix.data.split import split_by_article
    from batchmix.run.train import train

    train_split = split_by_article(load_lareqa(xquad_root, ["en", "de"]))["train"]
    pairs = write_training_jsonl(train_split.training_groups(), tmp_path / "pairs.jsonl")
    cfg = compose_cfg(TINY + [f"data.train_file={pairs}", "data.languages=[en,de]", "loss=distill_mse", "eval.before=false", "ratio=cross_only"])
    train(cfg, tmp_path / "run")
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert set(hist["batch_type"]) == {"cross"} and len(hist) == 6
    # Distillation starts from a copy of the student, so the first loss is small but not zero
    # (student sees de/en translations, teacher the English pivot) and stays finite.
    assert hist["loss"].notna().all() and (hist["loss"] >= 0).all()


@pytest.mark.slow
def test_training_changes_the_model_and_the_loss_falls(tmp_path, xquad_root):
    """Plain learning check on a tiny model: the InfoNCE loss goes down over a few epochs."""
    from batchmix.run.train import train

    cfg = compose_cfg(TINY + ["data.batches_per_epoch=10", "trainer.max_epochs=3", "optim.lr=1e-3", "eval.before=false", "ratio=mono_only"])
    train(cfg, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    # Every epoch trains its batches (Lightning's set_epoch must reach the hybrid sampler).
    assert list(hist["epoch"].value_counts().sort_index()) == [10, 10, 10]
    assert hist["loss"].tail(10).mean() < hist["loss"].head(5).mean()


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# The settings not in tests/test_bad_inputs.py's catalogue (which runs the common cases the same way).
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["ratio.mono=0.8", "ratio.multi=0.5"], ["cross=-0.3", "must not exceed 1"]),
        (["objective=map/mutli"], ["objective 'map/mutli'", "map/multi"]),
        (["loss.cache_chunk=0"], ["loss.cache_chunk=0", "positive integer"]),
        (["model.compile=ture"], ["model.compile=ture", "'ture' is not a valid bool"]),  # refused while Hydra composes
        (["model.compile=true", "model.compile_backend=inductr"], ["model.compile_backend='inductr'", "inductor"]),
        (["data.num_workers=-1"], ["data.num_workers=-1", "non-negative integer"]),
        (["trainer=ddp", "trainer.devices=3", "data.batch_size=16"], ["data.batch_size=16", "not divisible by the 3 processes", "multiple of 3"]),
    ],
)
@pytest.mark.slow
def test_cli_errors_are_one_line_before_any_model_loads(tmp_path, args, fragments, xquad_root):
    res = _run(["model=tiny", f"hydra.run.dir={tmp_path}/run", *args], cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr
    err_lines = [line for line in res.stderr.splitlines() if line.startswith("batchmix: error:")]
    assert len(err_lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in err_lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_cli_multirun_one_dir_per_ratio(tmp_path, xquad_root):
    res = _run(["-m", "ratio.mono=0.0,0.5,1.0", *TINY, "eval.before=false", f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("[0-9]*"))
    assert [r.name for r in runs] == ["0", "1", "2"]
    for run, mono in zip(runs, (0.0, 0.5, 1.0)):
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(run / "config.yaml")
        assert cfg.ratio.mono == mono and cfg.ratio.cross == pytest.approx(1 - mono)
        assert "map/multi" in json.loads((run / "metrics.json").read_text())
        types = set(pd.read_csv(run / "history.csv")["batch_type"])
        assert types == {0.0: {"cross"}, 0.5: {"mono", "cross"}, 1.0: {"mono"}}[mono]
    assert "map/multi" in res.stdout
