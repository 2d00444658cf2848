"""The launch loop of one sweeper run: ask trials while the study is short of its target, launch
them through Hydra's launcher in runs of consecutive trial numbers, tell the results.

Why apart from `_impl`: the sweeper there sets the study up and turns job results into trial
states; this module only decides what runs when, next to other sweepers on the same study.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any, List, Optional, Protocol, Sequence

import optuna
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from optuna.trial import TrialState

from ._heartbeat import Heartbeat, fail_stale_trials, requeue
from ._params import SearchSpace
from ._study import FINISHED, StudyState, SweeperError, _finished, trial_id

log = logging.getLogger(__name__)


class _Sweeper(Protocol):
    """What a `_Run` uses of its sweeper (`_impl.OptunaSweeperImpl`), named here so that `_impl`,
    which builds the run, and this module do not import each other."""

    n_trials: int
    n_jobs: int
    max_failure_rate: float
    heartbeat_interval: int
    launcher: Any

    @property
    def grace(self) -> int: ...
    def _job_overrides(self, space: SearchSpace, trial: optuna.Trial, storage: str, study_name: str) -> List[str]: ...
    def _salvage(self, trial: optuna.Trial, sweep_dir: Path) -> Optional[Any]: ...
    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Optional[JobReturn], sweep_dir: Path,
              missing: Optional[BaseException] = None) -> TrialState: ...


def _consecutive_runs(trials: Sequence[optuna.Trial]) -> List[List[int]]:
    """Indices of `trials` grouped into runs of consecutive trial numbers (one launch each)."""
    runs: List[List[int]] = []
    for i, trial in enumerate(trials):
        if runs and trials[runs[-1][-1]].number + 1 == trial.number:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


class _Run:
    """One sweeper run: ask trials while the study is short of its target and this run's budget
    (the trials missing when it started) lasts, launch them, tell the results."""

    def __init__(self, sweeper: _Sweeper, study: optuna.Study, rdb: optuna.storages.RDBStorage, space: SearchSpace,
                 storage: str, sweep_dir: Path, budget: int) -> None:
        self.sweeper, self.study, self.rdb, self.space = sweeper, study, rdb, space
        self.storage, self.sweep_dir, self.budget = storage, sweep_dir, budget
        self.target = sweeper.n_trials
        self.heartbeat: Heartbeat
        self.returns: List[Sequence[JobReturn]] = []
        self.launched = self.failed = self.told = 0
        self.ids: dict[int, int] = {}  # trial number -> the storage's trial id, for the heartbeat

    def loop(self) -> None:
        waiting_for: List[int] = []
        while True:
            fail_stale_trials(self.study, self.rdb)
            state = StudyState.of(self.study)
            if state.finished >= self.target or self.launched >= self.budget:
                return
            free = self.target - state.finished - len(state.running)
            if free <= 0:
                # The rest of the study runs in other sweepers: wait until they finish it, or die
                # and their trials turn stale (then this run takes them over).
                if state.running != waiting_for:
                    log.info("waiting for trial(s) %s, running in another sweeper (a trial whose sweeper died is failed "
                             "after %d s without heartbeat, and run again here)", state.running, self.sweeper.grace)
                    waiting_for = state.running
                time.sleep(self.sweeper.heartbeat_interval)
                continue
            trials = self._admitted(self._ask(min(self.sweeper.n_jobs, free, self.budget - self.launched)))
            jobs = [self._job(t) for t in trials]
            if any(jobs):
                self._round([t for t, j in zip(trials, jobs) if j], [j for j in jobs if j])

    def _ask(self, n: int) -> List[optuna.Trial]:
        trials = []
        for _ in range(n):
            with warnings.catch_warnings():
                # Optuna warns that its heartbeat thread only runs in `optimize`; this sweeper beats itself.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self.study.ask()
            self.ids[trial.number] = trial_id(trial)  # looked up once: the storage may be gone when it is removed
            self.heartbeat.add(self.ids[trial.number])
            trials.append(trial)
        return trials

    def _admitted(self, trials: List[optuna.Trial]) -> List[optuna.Trial]:
        """The asked trials that fit the target: another sweeper may have asked between this one's
        count and its ask. A trial runs only if the finished trials plus the running ones asked
        before it leave room; the others are FAIL with user attr `surplus`, before any parameter."""
        frozen = self.study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in frozen)
        running = [t.number for t in frozen if t.state == TrialState.RUNNING]  # numbers follow the order of asking
        admitted = []
        for trial in trials:
            if finished + sum(i < trial.number for i in running) < self.target:
                admitted.append(trial)
                continue
            self.heartbeat.remove([self.ids[trial.number]])
            trial.set_user_attr("surplus", f"the study reached hydra.sweeper.n_trials={self.target} in another sweeper")
            self.study.tell(trial, state=TrialState.FAIL)
            log.info("trial %d not run: the study's other trials fill hydra.sweeper.n_trials=%d", trial.number, self.target)
        return admitted

    def _job(self, trial: optuna.Trial) -> List[str]:
        """The trial's job overrides; [] (and the trial FAIL) when its parameters do not fit the search
        space, e.g. a queued point of an earlier run whose space was different."""
        try:
            return self.sweeper._job_overrides(self.space, trial, self.storage, self.study.study_name)
        except ValueError as err:
            self.heartbeat.remove([self.ids[trial.number]])
            self.launched += 1
            trial.set_user_attr("error", str(err)[:500])
            self.study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: its parameters %s do not fit this search space (%s)", trial.number,
                        trial.params, err)
            return []

    def _round(self, trials: List[optuna.Trial], jobs: List[List[str]]) -> None:
        sweeper, study = self.sweeper, self.study
        self.launched += len(trials)
        results: List[Optional[JobReturn]] = [None] * len(trials)
        missing: Optional[BaseException] = None
        try:
            for run in _consecutive_runs(trials):
                # job num == trial number: a continued study never reuses a job dir.
                launched = sweeper.launcher.launch([jobs[i] for i in run], initial_job_idx=trials[run[0]].number)
                for i, ret in zip(run, launched):
                    results[i] = ret
        except HydraException:
            # A config that cannot even be composed: every trial would fail the same way.
            for trial, ret in zip(trials, results):
                if ret is None:
                    study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as err:  # noqa: BLE001 - e.g. a SLURM job that ended without a result
            missing = err
            log.warning("the launcher gave no result for some of trials %s (%s: %s)", [t.number for t in trials],
                        type(err).__name__, err)
        except BaseException as stop:  # SweepInterrupted, KeyboardInterrupt, SystemExit of a job
            self._settle(trials, results, stop)
            raise
        finally:
            self.heartbeat.remove([self.ids[t.number] for t in trials])
        self.returns.append([r for r in results if r is not None])
        for trial, ret in zip(trials, results):
            self.told += 1
            self.failed += sweeper._tell(study, trial, ret, self.sweep_dir, missing) == TrialState.FAIL
        if self.failed / self.told > sweeper.max_failure_rate:
            raise SweeperError(f"{self.failed} of {self.told} trials failed (hydra.sweeper.max_failure_rate="
                               f"{sweeper.max_failure_rate}); see the job logs in {self.sweep_dir}")

    def _settle(self, trials: List[optuna.Trial], results: List[Optional[JobReturn]], stop: BaseException) -> None:
        """The sweep is being stopped: tell what came back (or was written to a run dir), fail and
        requeue the rest so a rerun runs those points again."""
        why = f"was interrupted ({stop.__class__.__name__}{': ' + str(stop) if str(stop) else ''})"
        for trial, ret in zip(trials, results):
            if ret is not None or self.sweeper._salvage(trial, self.sweep_dir) is not None:
                self.sweeper._tell(self.study, trial, ret, self.sweep_dir, stop)
                continue
            if _finished(trial):
                continue  # failed as stale by another sweeper, which queued it again
            self.study.tell(trial, state=TrialState.FAIL)
            requeue(self.study, self.rdb.get_trial(self.ids[trial.number]), why)
