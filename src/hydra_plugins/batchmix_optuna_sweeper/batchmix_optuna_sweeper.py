"""The plugin class Hydra discovers; the work (and the Optuna import) is in `_impl`."""

from __future__ import annotations

from typing import Any, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class BatchmixOptunaSweeper(Sweeper):
    """Hydra sweeper running an Optuna study with ask/tell; see `config.BatchmixOptunaSweeperConf`."""

    def __init__(self, sampler: Any, direction: Any, storage: Optional[str], study_name: Optional[str], n_trials: int,
                 n_jobs: int, max_failure_rate: float, pruner: Any, metric_names: Any, params: Optional[DictConfig],
                 heartbeat_interval: int = 10, grace_period: Optional[int] = 60) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(
            sampler=sampler, direction=direction, storage=storage, study_name=study_name, n_trials=n_trials,
            n_jobs=n_jobs, max_failure_rate=max_failure_rate, pruner=pruner, metric_names=metric_names, params=params,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period,
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self.sweeper.sweep(arguments)
