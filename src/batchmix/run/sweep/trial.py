"""How a running job reaches its Optuna trial: three environment variables set per job.

The batchmix Optuna sweeper launches every trial through Hydra's launcher with the override
`hydra.job.env_set.<VAR>=...` for the variables below. Hydra sets them around the task function
in whatever process runs the job (in-process basic launcher, joblib, SLURM/submitit), so the job
can `optuna.load_study` from the same RDB storage (SQLite file, PostgreSQL, ...) and
`trial.report` / `trial.should_prune` on its own trial. Nothing is shared in memory, so this works
across processes and machines exactly as it does in-process.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import optuna

STORAGE_ENV = "BATCHMIX_OPTUNA_STORAGE"
STUDY_ENV = "BATCHMIX_OPTUNA_STUDY"
TRIAL_ID_ENV = "BATCHMIX_OPTUNA_TRIAL_ID"

log = logging.getLogger("batchmix")


def trial_env(storage: str, study_name: str, trial_id: int) -> dict[str, str]:
    """The environment that identifies one trial (set by the sweeper for its job)."""
    return {STORAGE_ENV: storage, STUDY_ENV: study_name, TRIAL_ID_ENV: str(trial_id)}


def in_trial(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return all(env.get(k) for k in (STORAGE_ENV, STUDY_ENV, TRIAL_ID_ENV))


def current_trial(pruner: "optuna.pruners.BasePruner | None" = None, environ: Mapping[str, str] | None = None) -> "optuna.Trial | None":
    """The Optuna trial this job runs for, or None outside a batchmix Optuna sweep.

    `pruner` decides `should_prune`; None: the one configured for the sweeper
    (`hydra.sweeper.pruner`), else Optuna's default (MedianPruner), as the sweeper does.
    """
    env = os.environ if environ is None else environ
    if not in_trial(env):
        return None
    import optuna

    if pruner is None:
        pruner = sweeper_pruner()
    # The sampler is never asked here (the sweeper suggested every parameter already); a
    # RandomSampler keeps `Trial()` from fitting anything when it prepares relative params.
    study = optuna.load_study(
        study_name=env[STUDY_ENV], storage=env[STORAGE_ENV], sampler=optuna.samplers.RandomSampler(), pruner=pruner
    )
    return optuna.trial.Trial(study, int(env[TRIAL_ID_ENV]))


def sweeper_pruner() -> Any:
    """`hydra.sweeper.pruner` of the running Hydra job, instantiated; None if unset or not in Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    if not HydraConfig.initialized():
        return None
    spec = HydraConfig.get().sweeper.get("pruner")
    return instantiate(spec) if spec else None


def report(trial: "optuna.Trial", value: float, step: int) -> None:
    """Report an intermediate value; raise `optuna.TrialPruned` if the pruner gives up on this trial.

    The exception leaves the job (and Lightning's `fit`) like any error; the sweeper recognises it
    and tells the study PRUNED instead of FAIL.
    """
    import optuna

    trial.report(float(value), step)
    if trial.should_prune():
        log.info("trial %d pruned at step %d (intermediate value %.4f)", trial.number, step, value)
        raise optuna.TrialPruned(f"trial {trial.number} pruned at step {step}: intermediate value {value:.4f}")
