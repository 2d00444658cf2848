"""The sweep loop: ask `n_jobs` trials, launch them through Hydra's launcher, tell the results.

Why our own sweeper and not hydra-optuna-sweeper: that plugin (1.3.x) pins optuna<3, which rules
out current samplers and SQLAlchemy 2; Optuna's ask/tell API makes the loop a page of code.

- Storage is always a database (default: SQLite in the sweep dir), so a job can reach its trial
  (`batchmix.run.sweep.trial`) and a rerun with the same storage and study name resumes the study.
- `n_trials` is the study's target of finished (COMPLETE or PRUNED) trials, as Optuna's
  `MaxTrialsCallback`: a run adds only the missing ones, so a killed sweep rerun with the same
  command ends with exactly `n_trials`; a finished study runs nothing. Parallel sweepers on one
  study share the target (a trial is run only if the finished and lower-numbered running trials
  leave room for it).
- Trials of a sweeper that died are failed after their heartbeat stops and their parameters run
  again (`_heartbeat`); SIGTERM / Ctrl-C fail and requeue the in-flight trials at once (`_signals`).
- A job that raises (or exits non-zero) makes its trial FAIL and the sweep goes on; a job that
  raises `optuna.TrialPruned` makes it PRUNED; a job that gives no result back is told from the
  `metrics.json` in its run dir if it wrote one, else FAIL (`_saved_result`). A run tries each missing
  trial once: rerun it to retry the failed ones.
- Job `hydra.job.num` is the trial number, so job dirs of a continued study never collide.
- At the end: `optuna_trials.csv` (every trial), `pareto_front.csv` (multi-objective) or
  `optimization_results.yaml` (best trial) in the sweep dir.

This module sets the study up and tells it the jobs' results; the launch loop is `_loop`, the
study's counts `_study`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence

import optuna
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import TrialState

from batchmix.core.errors import error_line
from batchmix.run.sweep.trial import trial_env

from ._heartbeat import Heartbeat, fail_stale_trials, on_stale
from ._loop import _Run
from ._params import SearchSpace
from ._results import write_results
from ._saved_result import result_from_run_dir
from ._signals import SweepInterrupted, interrupt_signals
from ._storage import StorageError, hide_password, open_storage, retrying
from ._study import StudyState, SweeperError, _finished, _n_trials, _sampler, trial_id


def job_error(ret: JobReturn) -> BaseException:
    """The exception a failed job raised. Hydra's public `return_value` re-raises it, after writing
    an \"Error executing job\" line to stderr that the sweeper's own log line replaces."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ret.return_value
    except BaseException as err:  # noqa: BLE001 - whatever the job raised is the trial's error
        return err
    return RuntimeError(f"job ended {ret.status.name} without an error")


log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")


class JobExited(RuntimeError):
    """A job called sys.exit with a non-zero status (batchmix's CLI does on a config error)."""


class _ExitAsFailure:
    """Task-function wrapper: Hydra's `run_job` records an `Exception` as a failed job but lets
    `SystemExit` end the whole sweep; turn a non-zero exit into an exception so only the trial fails.
    A class (not a closure) so process-based launchers can pickle it."""

    def __init__(self, task_function: TaskFunction) -> None:
        self.task_function = task_function

    def __call__(self, cfg: DictConfig) -> Any:
        try:
            return self.task_function(cfg)
        except SystemExit as err:
            if err.code in (0, None):
                raise
            raise JobExited(f"job exited with status {err.code}") from None


def _quote(value: str) -> str:
    """A string as a quoted value of Hydra's override grammar (URLs contain ':', '@', '?', quotes,
    backslashes ...), with `${` escaped so OmegaConf does not take it for an interpolation."""
    return QuotedString(text=value.replace("${", "\\${"), quote=Quote.single).with_quotes()


def _user_error(message: str) -> None:
    """A bad setting found before any trial: one line, exit 2, as batchmix's CLI does."""
    raise SystemExit(error_line(message))


class OptunaSweeperImpl(Sweeper):
    def __init__(self, sampler: Any, direction: Any, storage: Optional[str], study_name: Optional[str], n_trials: int,
                 n_jobs: int, max_failure_rate: float, pruner: Any, metric_names: Any, params: Optional[DictConfig],
                 heartbeat_interval: int = 10, grace_period: Optional[int] = 60) -> None:
        self.sampler, self.pruner = sampler, pruner
        self.directions = self._directions(direction)
        self.storage, self.study_name = storage, study_name
        if n_trials < 0 or n_jobs < 1 or not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper: need n_trials >= 0 (got {n_trials}), n_jobs >= 1 (got {n_jobs}), "
                             f"0 <= max_failure_rate <= 1 (got {max_failure_rate})")
        if heartbeat_interval < 1 or (grace_period is not None and grace_period <= heartbeat_interval):
            raise ValueError(f"hydra.sweeper: need heartbeat_interval >= 1 (got {heartbeat_interval}) and grace_period null "
                             f"or > heartbeat_interval (got {grace_period})")
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.heartbeat_interval, self.grace_period = int(heartbeat_interval), grace_period
        self.metric_names = self._names(metric_names)
        self.params = params
        self.config: Optional[DictConfig] = None

    @staticmethod
    def _directions(direction: Any) -> List[str]:
        items = list(direction) if isinstance(direction, (list, tuple, ListConfig)) else [direction]
        names = [str(getattr(d, "name", d)).lower() for d in items]
        bad = [d for d in names if d not in DIRECTIONS]
        if not names or bad:
            raise ValueError(f"hydra.sweeper.direction={direction!r}: use maximize / minimize or a list of them")
        return names

    def _names(self, metric_names: Any) -> Optional[List[str]]:
        if metric_names is None:
            return None
        names = [str(metric_names)] if isinstance(metric_names, str) else [str(n) for n in metric_names]
        if len(names) != len(self.directions):
            raise ValueError(f"hydra.sweeper.metric_names={names} has {len(names)} names for {len(self.directions)} directions")
        return names

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=_ExitAsFailure(task_function)
        )

    @property
    def grace(self) -> int:
        """Seconds without heartbeat after which a RUNNING trial is stale (Optuna's default: 2 x interval)."""
        return self.grace_period or 2 * self.heartbeat_interval

    def _open_study(self, storage: str, study_name: str) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
        try:
            rdb = open_storage(storage, self.heartbeat_interval, self.grace_period, on_stale(self.grace))
        except StorageError as err:
            _user_error(str(err))
        sampler = _sampler(self.sampler, _n_trials(rdb, study_name))
        pruner = instantiate(self.pruner) if self.pruner else None
        study = retrying(lambda: optuna.create_study(storage=rdb, study_name=study_name, sampler=sampler, pruner=pruner,
                                                     directions=self.directions, load_if_exists=True))
        existing = [d.name.lower() for d in study.directions]
        if existing != self.directions:
            raise SweeperError(f"study {study_name!r} in {hide_password(storage)} has directions {existing}, the config asks "
                               f"for {self.directions}: set another hydra.sweeper.study_name (or storage)")
        if self.metric_names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(self.metric_names)
        return study, rdb

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        except OSError as err:
            _user_error(f"hydra.sweep.dir={sweep_dir} cannot be written ({err.strerror or err}): choose a writable folder, "
                        f"e.g. hydra.sweep.dir=$HOME/batchmix/multirun/optuna")

        params = [f"{k}={v}" for k, v in (self.params or {}).items()]
        space = SearchSpace.parse(params + list(arguments))
        storage = str(self.storage) if self.storage else f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        study_name = self.study_name or str(self.config.hydra.job.name)
        study, rdb = self._open_study(storage, study_name)
        fail_stale_trials(study, rdb)
        start = StudyState.of(study)
        log.info("Optuna study %r in %s: %d of hydra.sweeper.n_trials=%d trials finished (%d failed, %d running); "
                 "sampler %s, directions %s", study_name, hide_password(storage), start.finished, self.n_trials, start.failed,
                 len(start.running), type(study.sampler).__name__, self.directions)
        if start.finished >= self.n_trials:
            log.info("study %r already has %d finished trials: nothing to run (raise hydra.sweeper.n_trials to extend it)",
                     study_name, start.finished)
            write_results(study, sweep_dir, OmegaConf.select(self.config, "objective"))
            return []

        run = _Run(self, study, rdb, space, storage, sweep_dir, budget=self.n_trials - start.finished)
        try:
            with Heartbeat(rdb, self.heartbeat_interval) as run.heartbeat, interrupt_signals():
                run.loop()
        except (SweepInterrupted, KeyboardInterrupt, SystemExit) as stop:
            if isinstance(stop, SweepInterrupted):
                why, code = str(stop), stop.exit_code
            elif isinstance(stop, KeyboardInterrupt):
                why, code = "KeyboardInterrupt", 130
            else:  # a job called sys.exit(0) (Lightning does on SIGTERM): it ends the sweep, not with success
                why, code = f"a job's exit({stop.code})", stop.code if isinstance(stop.code, int) and stop.code else 1
            print(f"batchmix: sweep stopped by {why}: its running trials are marked FAIL and queued to run again; rerun "
                  f"the same command to resume study {study_name!r}", file=sys.stderr)
            raise SystemExit(code) from None
        finally:
            write_results(study, sweep_dir, OmegaConf.select(self.config, "objective"))
        end = StudyState.of(study)
        log.info("study %r now has %d of %d finished trials (this run launched %d, %d failed); results in %s", study_name,
                 end.finished, self.n_trials, run.launched, run.failed, sweep_dir)
        if end.finished < self.n_trials:
            log.warning("study %r is %d trial(s) short of hydra.sweeper.n_trials=%d because trials failed: rerun the same "
                        "command to run the missing ones", study_name, self.n_trials - end.finished, self.n_trials)
        return run.returns

    def _job_overrides(self, space: SearchSpace, trial: optuna.Trial, storage: str, study_name: str) -> List[str]:
        overrides, derived = space.suggest(trial)
        for key, value in derived.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("overrides", overrides)
        env = trial_env(storage, study_name, trial_id(trial))
        # `++`: add the key, or replace it if the user's config already sets it.
        return overrides + [f"++hydra.job.env_set.{k}={_quote(v)}" for k, v in env.items()]

    def _run_dir(self, trial: optuna.Trial, sweep_dir: Path) -> Optional[Path]:
        """<sweep dir>/<trial number> when `hydra.sweep.subdir` is Hydra's default `${hydra.job.num}`."""
        assert self.config is not None
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")  # type: ignore[union-attr]
        return sweep_dir / str(trial.number) if subdir == "${hydra.job.num}" else None

    def _salvage(self, trial: optuna.Trial, sweep_dir: Path) -> Optional[Any]:
        """The result a job that gave none back left in its run dir, or None."""
        return result_from_run_dir(self._run_dir(trial, sweep_dir), OmegaConf.select(self.config, "objective"))

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Optional[JobReturn], sweep_dir: Path,
              missing: Optional[BaseException] = None) -> TrialState:
        """Tell `trial` the job's result; `ret` None: the job gave none back (`missing` says why)."""
        try:
            if _finished(trial):
                raise optuna.exceptions.UpdateFinishedTrialError()
            return self._tell_result(study, trial, ret, sweep_dir, missing)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another sweeper failed it as stale: this sweeper's heartbeat stopped for longer than the grace period.
            log.warning("trial %d was marked FAIL by another sweeper while it ran (no heartbeat for longer than the grace "
                        "period); its parameters run again there", trial.number)
            return TrialState.FAIL

    def _tell_result(self, study: optuna.Study, trial: optuna.Trial, ret: Optional[JobReturn], sweep_dir: Path,
                     missing: Optional[BaseException]) -> TrialState:
        if ret is not None and ret.hydra_cfg is not None:
            trial.set_user_attr("output_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
        if ret is None:
            value = self._salvage(trial, sweep_dir)
            if value is not None:
                run_dir = self._run_dir(trial, sweep_dir)
                log.warning("trial %d: no job result (%s); told from %s/metrics.json", trial.number, missing, run_dir)
                trial.set_user_attr("output_dir", str(run_dir))
                return self._tell_values(study, trial, value)
            error: BaseException = RuntimeError(f"no job result ({missing})" if missing else "no job result")
        elif ret.status != JobStatus.COMPLETED:
            error = job_error(ret)
        else:
            return self._tell_values(study, trial, ret.return_value)
        if isinstance(error, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d pruned: %s", trial.number, error)
            return TrialState.PRUNED
        trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed (%s: %s); the sweep goes on", trial.number, type(error).__name__, error)
        return TrialState.FAIL

    def _tell_values(self, study: optuna.Study, trial: optuna.Trial, value: Any) -> TrialState:
        try:
            values = self._values(value)
        except (TypeError, ValueError) as err:
            trial.set_user_attr("error", str(err)[:500])
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, err)
            return TrialState.FAIL
        return study.tell(trial, values).state  # FAIL if a value was NaN (Optuna's rule)

    def _values(self, value: Any) -> List[float]:
        n = len(self.directions)
        items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
        if len(items) != n:
            raise ValueError(f"the job returned {value!r}; {n} objective value(s) expected for directions {self.directions}")
        try:
            return [float(v) for v in items]
        except (TypeError, ValueError):
            raise ValueError(f"the job returned {value!r}, not {n} number(s)") from None
