"""No trial stays RUNNING after its sweeper died (SIGKILL, lost node, OOM), and no point is lost.

While a sweeper runs trials it records Optuna's heartbeat for each of them every
`heartbeat_interval` seconds (Optuna starts that thread only inside `study.optimize`; with ask/tell
the sweeper does it). Any sweeper on the study, before it asks for trials, fails the RUNNING trials
whose heartbeat is older than the grace period (`optuna.storages.fail_stale_trials`) and queues
their parameters as a WAITING trial (as Optuna's `RetryHeartbeatStaleTrialCallback` does), which the
next `study.ask()` takes. A live sweeper's trials keep beating, so parallel workers never fail each
other's trials. Trials left RUNNING by a sweeper that never beat (batchmix before heartbeats, or
another tool) are treated the same once they are older than the grace period.
"""

from __future__ import annotations

import logging
import threading
import warnings
from datetime import datetime, timedelta
from typing import Callable, Iterable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._study import storage_trial_id

log = logging.getLogger(__name__)

# System attr of every trial a batchmix sweeper ran with heartbeats.
BEATING = "batchmix:heartbeat"
# An interrupted point is queued again at most this many times (a point that kills its worker each
# time stays FAIL after that, and the study draws another one).
MAX_RETRY = 2


class Heartbeat:
    """Records the heartbeat of this sweeper's in-flight trials from a daemon thread."""

    def __init__(self, storage: optuna.storages.RDBStorage, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Heartbeat":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="batchmix-optuna-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def add(self, trial_id: int) -> None:
        """Beat for `trial_id` from now on (its first beat is recorded before this returns)."""
        self.storage.set_trial_system_attr(trial_id, BEATING, self.interval)
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self._trial_ids.add(trial_id)

    def remove(self, trial_ids: Iterable[int]) -> None:
        with self._lock:
            self._trial_ids.difference_update(trial_ids)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                trial_ids = sorted(self._trial_ids)
            for trial_id in trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # noqa: BLE001 - a busy database must not end the beating
                    log.warning("could not record the heartbeat of trial id %d (%s); retrying in %d s",
                                trial_id, err, self.interval)


def requeue(study: optuna.Study, trial: FrozenTrial, why: str) -> None:
    """Queue the parameters of `trial` (now FAIL) as a WAITING trial, and say so in one line.

    As Optuna's `RetryHeartbeatStaleTrialCallback` (same `failed_trial` / `retry_history` system
    attrs, so its `retried_trial_number` works), minus this sweeper's heartbeat mark."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    if not trial.params:
        log.warning("trial %d %s: marked FAIL (it had no parameters yet)", trial.number, why)
        return
    if len(history) > MAX_RETRY:
        log.warning("trial %d (%s) %s: marked FAIL; interrupted %d times, so not queued again", trial.number, params, why,
                    len(history))
        return
    system_attrs = {k: v for k, v in trial.system_attrs.items() if k != BEATING}
    system_attrs.update(failed_trial=system_attrs.get("failed_trial", trial.number), retry_history=history)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
                                              user_attrs=trial.user_attrs, system_attrs=system_attrs))
    log.warning("trial %d (%s) %s: marked FAIL, its parameters queued to run again", trial.number, params, why)


def on_stale(grace: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """The storage's `heartbeat_stale_trial_callback`: Optuna calls it once per trial it just failed."""

    def requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
        requeue(study, trial, f"was left RUNNING by a sweeper that stopped (no heartbeat for over {grace} s)")

    return requeue_stale


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.RDBStorage) -> None:
    """Fail and requeue the study's trials whose sweeper is gone (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    grace = timedelta(seconds=storage.grace_period or 2 * (storage.heartbeat_interval or 0))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start
        if BEATING in trial.system_attrs or started is None or datetime.now() - started <= grace:
            continue
        key = storage_trial_id(storage, study.study_name, trial.number)
        try:
            if not storage.set_trial_state_values(key, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another sweeper got there first
        requeue(study, storage.get_trial(key),
                f"was left RUNNING since {started:%Y-%m-%d %H:%M:%S} by a sweeper without heartbeat")
