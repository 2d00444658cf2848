"""Parallel workers on one PostgreSQL study: three processes run the batchmix Optuna sweeper (the
training-free dry run as task) on the same study at once; no trial may be lost or duplicated.

Needs a server: CI starts one with `eval "$(.ci/postgres.sh start)"`, which exports
BATCHMIX_TEST_PG_URL (a SQLAlchemy URL, postgresql+psycopg://...).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from omegaconf import OmegaConf

PG_URL = os.environ.get("BATCHMIX_TEST_PG_URL")
pytestmark = pytest.mark.skipif(
    not PG_URL, reason='BATCHMIX_TEST_PG_URL is unset: start a throwaway server with eval "$(.ci/postgres.sh start)" (CI does)'
)

WORKERS, TRIALS_EACH = 3, 5


def test_parallel_workers_share_one_study(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from batchmix.mixing.ratio import Ratio
    from batchmix.run.sweep.dry_run import synthetic_metrics

    name = f"pg-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "batchmix.run.sweep.dry_run", "-m", "hparams_search=ratio_optuna",
             f"hydra.sweeper.storage={PG_URL}", f"hydra.sweeper.study_name={name}",
             f"hydra.sweeper.n_trials={WORKERS * TRIALS_EACH}", "hydra.sweeper.n_jobs=2",  # the study's target, shared
             f"hydra.sweeper.sampler.seed={w}",  # one seed per worker, or they would propose the same points
             f"hydra.sweep.dir={tmp_path}/worker{w}"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(WORKERS)
    ]
    outputs = [w.communicate(timeout=120) for w in workers]
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    try:
        study = optuna.load_study(study_name=name, storage=PG_URL)
        n = WORKERS * TRIALS_EACH
        trials = study.trials
        assert sorted(t.number for t in trials) == list(range(len(trials)))  # no number handed out twice
        assert len({t._trial_id for t in trials}) == len(trials)
        for t in trials:  # a trial asked in the same instant as another worker's last one is FAIL and never ran
            assert t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "surplus" in t.user_attrs and not t.params)
        trials = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(trials) == n  # nothing lost, nothing extra
        # Every trial was told the value of the job that ran it, and each job dir is one trial's.
        job_dirs = sorted(Path(t.user_attrs["output_dir"]) for t in trials)
        assert len(set(job_dirs)) == n and {d.parent.name for d in job_dirs} == {f"worker{w}" for w in range(WORKERS)}
        for t in trials:
            run = Path(t.user_attrs["output_dir"])
            assert run.name == str(t.number)
            ratio = Ratio.from_mapping(OmegaConf.load(run / "config.yaml").ratio)
            assert ratio.as_dict() == {k: t.user_attrs[f"ratio.{k}"] for k in ("mono", "cross", "multi")}
            assert t.value == pytest.approx(synthetic_metrics(ratio)["val/map/multi"])
    finally:
        optuna.delete_study(study_name=name, storage=PG_URL)
