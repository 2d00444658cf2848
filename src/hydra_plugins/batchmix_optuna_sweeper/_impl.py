"""The sweep loop: ask `n_jobs` trials, launch them through Hydra's launcher, tell the results.

Why our own sweeper and not hydra-optuna-sweeper: that plugin (1.3.x) pins optuna<3, which rules
out current samplers and SQLAlchemy 2; Optuna's ask/tell API makes the loop a page of code.

- Storage is always a database (default: SQLite in the sweep dir), so a job can reach its trial
  (`batchmix.sweep.trial`) and a rerun with the same storage and study name continues the study.
- A job that raises (or exits non-zero) makes its trial FAIL and the sweep goes on; a job that
  raises `optuna.TrialPruned` makes it PRUNED.
- Job `hydra.job.num` is the trial number, so job dirs of a continued study never collide.
- At the end: `optuna_trials.csv` (every trial), `pareto_front.csv` (multi-objective) or
  `optimization_results.yaml` (best trial) in the sweep dir.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import optuna
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from batchmix.sweep.trial import trial_env

from ._params import SearchSpace
from ._results import write_results

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")


class SweeperError(CompactHydraException):
    """A sweep that cannot go on; Hydra prints the message alone, without a traceback."""


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


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used for log lines
        return url


def _retrying(make: Callable[[], Any], retries: int = 5) -> Any:
    """Workers starting together on a fresh database race to create Optuna's tables and the study
    row; the loser of such a race just tries again."""
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(retries):
        try:
            return make()
        except (SQLAlchemyError, optuna.exceptions.DuplicatedStudyError) as err:
            if attempt == retries - 1:
                raise
            log.info("storage busy (%s), retrying", type(err).__name__)
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


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


def _consecutive_runs(trials: Sequence[optuna.Trial]) -> List[List[int]]:
    """Indices of `trials` grouped into runs of consecutive trial numbers (one launch each)."""
    runs: List[List[int]] = []
    for i, trial in enumerate(trials):
        if runs and trials[runs[-1][-1]].number + 1 == trial.number:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


class OptunaSweeperImpl(Sweeper):
    def __init__(self, sampler: Any, direction: Any, storage: Optional[str], study_name: Optional[str], n_trials: int,
                 n_jobs: int, max_failure_rate: float, pruner: Any, metric_names: Any, params: Optional[DictConfig]) -> None:
        self.sampler, self.pruner = sampler, pruner
        self.directions = self._directions(direction)
        self.storage, self.study_name = storage, study_name
        if n_trials < 0 or n_jobs < 1 or not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper: need n_trials >= 0 (got {n_trials}), n_jobs >= 1 (got {n_jobs}), "
                             f"0 <= max_failure_rate <= 1 (got {max_failure_rate})")
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
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

    def _storage_url(self, sweep_dir: Path) -> str:
        if self.storage:
            return str(self.storage)
        return f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        params = [f"{k}={v}" for k, v in (self.params or {}).items()]
        space = SearchSpace.parse(params + list(arguments))
        storage = self._storage_url(sweep_dir)
        study_name = self.study_name or str(self.config.hydra.job.name)
        rdb = _retrying(lambda: optuna.storages.RDBStorage(storage))
        before = _n_trials(rdb, study_name)
        sampler = _sampler(self.sampler, before)
        pruner = instantiate(self.pruner) if self.pruner else None
        study = _retrying(lambda: optuna.create_study(storage=rdb, study_name=study_name, sampler=sampler, pruner=pruner,
                                                      directions=self.directions, load_if_exists=True))
        existing = [d.name.lower() for d in study.directions]
        if existing != self.directions:
            raise SweeperError(f"study {study_name!r} in {_hide_password(storage)} has directions {existing}, the config asks "
                               f"for {self.directions}: set another hydra.sweeper.study_name (or storage)")
        if self.metric_names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(self.metric_names)
        log.info("Optuna study %r in %s: %d trials so far, %d to add; sampler %s, directions %s",
                 study_name, _hide_password(storage), before, self.n_trials, type(sampler).__name__, self.directions)

        returns: List[Sequence[JobReturn]] = []
        finished = failed = 0
        remaining = self.n_trials
        try:
            while remaining > 0:
                trials = [study.ask() for _ in range(min(self.n_jobs, remaining))]
                remaining -= len(trials)
                jobs = [self._job_overrides(space, trial, storage, study_name) for trial in trials]
                results: List[Optional[JobReturn]] = [None] * len(trials)
                try:
                    for run in _consecutive_runs(trials):
                        # job num == trial number: a continued study never reuses a job dir.
                        launched = self.launcher.launch([jobs[i] for i in run], initial_job_idx=trials[run[0]].number)
                        for i, ret in zip(run, launched):
                            results[i] = ret
                except BaseException:
                    # A config that cannot even be composed (or Ctrl-C): no trial stays RUNNING.
                    for trial, ret in zip(trials, results):
                        if ret is None:
                            study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                returns.append([r for r in results if r is not None])
                for trial, ret in zip(trials, results):
                    finished += 1
                    failed += self._tell(study, trial, ret) == optuna.trial.TrialState.FAIL
                if failed / finished > self.max_failure_rate:
                    raise SweeperError(f"{failed} of {finished} trials failed (hydra.sweeper.max_failure_rate={self.max_failure_rate}); "
                                       f"see the job logs in {sweep_dir}")
        finally:
            write_results(study, sweep_dir)
        log.info("study %r now has %d trials (%d from this run, %d of them failed); results in %s", study_name,
                 len(study.trials), finished, failed, sweep_dir)
        return returns

    def _job_overrides(self, space: SearchSpace, trial: optuna.Trial, storage: str, study_name: str) -> List[str]:
        overrides, derived = space.suggest(trial)
        for key, value in derived.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("overrides", overrides)
        # The storage's own trial id (Optuna keeps it private; `number` is only unique per study).
        env = trial_env(storage, study_name, trial._trial_id)
        # `++`: add the key, or replace it if the user's config already sets it.
        return overrides + [f"++hydra.job.env_set.{k}={_quote(v)}" for k, v in env.items()]

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Optional[JobReturn]) -> optuna.trial.TrialState:
        TrialState = optuna.trial.TrialState
        if ret is not None and ret.hydra_cfg is not None:
            trial.set_user_attr("output_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
        if ret is None or ret.status != JobStatus.COMPLETED:
            # A failed JobReturn holds the exception; reading `return_value` would re-raise it.
            error = ret._return_value if ret is not None else RuntimeError("no job result")
            if isinstance(error, optuna.TrialPruned):
                study.tell(trial, state=TrialState.PRUNED)
                log.info("trial %d pruned: %s", trial.number, error)
                return TrialState.PRUNED
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed (%s: %s); the sweep goes on", trial.number, type(error).__name__, error)
            return TrialState.FAIL
        try:
            values = self._values(ret.return_value)
        except (TypeError, ValueError) as err:
            trial.set_user_attr("error", str(err)[:500])
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, err)
            return TrialState.FAIL
        frozen = study.tell(trial, values)
        return frozen.state  # FAIL if a value was NaN (Optuna's rule)

    def _values(self, value: Any) -> List[float]:
        n = len(self.directions)
        items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
        if len(items) != n:
            raise ValueError(f"the job returned {value!r}; {n} objective value(s) expected for directions {self.directions}")
        try:
            return [float(v) for v in items]
        except (TypeError, ValueError):
            raise ValueError(f"the job returned {value!r}, not {n} number(s)") from None
