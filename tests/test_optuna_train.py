"""`python train.py -m hparams_search=ratio_optuna` end to end on the tiny model: real training per
trial into a SQLite study, and a rerun with a higher n_trials that extends the same study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=6", "save_model=false",
        "eval.before=false", "logger=csv"]


@pytest.mark.slow
def test_optuna_ratio_search_trains_and_continues(tmp_path, xquad_root):
    import optuna
    from optuna.trial import TrialState

    from batchmix.mixing.ratio import Ratio

    storage = f"sqlite:///{tmp_path}/study.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = [sys.executable, str(REPO / "train.py"), "-m", "hparams_search=ratio_optuna", *TINY,
            f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path}/sweep"]
    for n_total in (2, 4):  # n_trials is the study's target: the rerun adds the 2 missing trials
        res = subprocess.run([*args, f"hydra.sweeper.n_trials={n_total}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        trials = optuna.load_study(study_name="ratio_optuna", storage=storage).trials
        assert [t.number for t in trials] == list(range(n_total))
        assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        run = tmp_path / "sweep" / str(t.number)
        cfg = OmegaConf.load(run / "config.yaml")
        trained = Ratio.from_mapping(cfg.ratio).as_dict()
        assert trained == {k: t.user_attrs[f"ratio.{k}"] for k in ("mono", "cross", "multi")}
        metrics = json.loads((run / "metrics.json").read_text())
        assert t.value == pytest.approx(metrics["val/map/multi"])  # chosen on the final validation ...
        assert 0.0 <= metrics["map/multi"] <= 1.0  # ... the test split is scored for every trial, never chosen on
    best = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert best.selection_split == "val" and best.objective == "val/map/multi"
    assert best.best_value == pytest.approx(max(t.value for t in trials))
