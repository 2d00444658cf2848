"""The ratio study's one command (experiments/ratio_study/run.sh) end to end on a tiny model: warm,
zero-shot row, a grid, an Optuna search, the CSVs and the README block; then a rerun that resumes
(nothing retrained) and the README regenerated from the CSVs alone. Its config composes with the
protocol of issue #16."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.report.markdown import BEGIN, END

REPO = Path(__file__).resolve().parents[1]


def test_ratio_study_config_keeps_the_protocol():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ratio_study", "sweep=simplex_grid"], return_hydra_config=True)
    assert cfg.objective == "val/map/multi" and cfg.eval.final_from == "best" and cfg.checkpoint.best is True
    assert cfg.eval.split == "test" and cfg.eval.sets["mlqa-r"].split == "all" and cfg.eval.sets["mlqa-r"].required is True
    assert cfg.checkpoint.keep == "none" and cfg.save_model is False  # a finished point keeps no weights
    assert cfg.sweep.step == 0.25 and cfg.model.train_top_layers == 2 and cfg.trainer.precision == "bf16-mixed"
    # the flattening check compares the last val point with the one at 80 % of the steps: both must exist
    steps, every = cfg.data.batches_per_epoch * cfg.trainer.max_epochs, cfg.eval.val_every_n_steps
    assert steps % every == 0 and (0.8 * steps) % every == 0


@pytest.mark.slow
def test_run_sh_runs_resumes_and_regenerates_on_a_tiny_model(tmp_path, xquad_root):
    out = tmp_path / "study"
    out.mkdir()
    (out / "README.md").write_text(f"# prose\n\n{BEGIN}\n{END}\n")
    env = {**os.environ, "SWEEP_DIR": str(tmp_path / "runs"), "RESULTS_DIR": str(out), "PY": sys.executable,
           "SEEDS": "0", "STEP": "0.5", "TRIALS": "2", "BATCHMIX_CACHE": str(tmp_path / "cache")}
    args = ["model=tiny", "model.train_top_layers=1", "trainer.precision=32-true", "data.languages=[en,de,es]",
            "+eval.sets.mlqa-r.languages=[en,de,es]", "data.batch_size=4", "data.batches_per_epoch=5",
            "eval.val_every_n_steps=1", "logger=none"]
    run = lambda: subprocess.run(["bash", str(REPO / "experiments" / "ratio_study" / "run.sh"), *args],  # noqa: E731
                                 env=env, capture_output=True, text=True, timeout=900)
    res = run()
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(out / "results.csv")
    assert runs["source"].value_counts().to_dict() == {"grid": 6, "optuna": 2, "zero_shot": 1}  # 6 ratios x 1 seed
    assert runs.loc[runs["source"] == "grid", "mlqa-r/map/multi"].notna().all()
    text = (out / "README.md").read_text()
    assert text.startswith("# prose") and "(6 grid runs: 6 ratios × seeds 0; 2 Optuna trials)" in text
    assert "| none (zero-shot) |" in text and "### Optuna TPE over the same simplex" in text
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # checkpoint.keep=none: no weights left behind
    # a rerun trains nothing and writes the same results
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already complete") + again.stdout.count("already complete") >= 7
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), runs)
