"""The study's bookkeeping: which trials are finished, failed or running, and the study's sampler.

Why apart from the sweep loop: the target arithmetic (`n_trials` finished trials, shared by
parallel sweepers) reads these counts at every round, in `_impl` and in `_loop` alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

import optuna
from hydra.errors import CompactHydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SweeperError(CompactHydraException):
    """A sweep that cannot go on; Hydra prints the message alone, without a traceback."""


def _n_trials(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    try:
        return len(storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False))
    except KeyError:
        return 0


def _sampler(spec: Any, n_existing: int) -> optuna.samplers.BaseSampler:
    """Instantiate the sampler config; a continued study gets seed + n_existing so it does not
    replay the random start-up points of the first run."""
    cfg = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)
    if n_existing and cfg.get("seed") is not None:
        cfg["seed"] = int(cfg["seed"]) + n_existing
    return instantiate(cfg)


def storage_trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's key of trial `number` of a study, which its storage methods take (`number` is
    only unique per study). Optuna keeps it private on a trial; its public storage API looks it up."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def trial_id(trial: optuna.Trial) -> int:
    """`storage_trial_id` of a running trial."""
    return storage_trial_id(trial.storage, trial.study.study_name, trial.number)


def _finished(trial: optuna.Trial) -> bool:
    """Whether the storage already holds `trial` as finished (another sweeper failed it as stale)."""
    return trial.storage.get_trial(trial_id(trial)).state.is_finished()


@dataclass
class StudyState:
    """The study's trials by state, as the target arithmetic needs them."""

    finished: int = 0
    failed: int = 0
    running: List[int] = field(default_factory=list)  # trial numbers

    @classmethod
    def of(cls, study: optuna.Study) -> "StudyState":
        state = cls()
        for t in study.get_trials(deepcopy=False):
            state.finished += t.state in FINISHED
            state.failed += t.state == TrialState.FAIL
            if t.state == TrialState.RUNNING:
                state.running.append(t.number)
        return state
