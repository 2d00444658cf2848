"""The plugin class Hydra discovers; the work (and the Optuna import) is in `_impl`."""

from __future__ import annotations

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class BatchmixOptunaSweeper(Sweeper):
    """Hydra sweeper running an Optuna study with ask/tell; see `config.BatchmixOptunaSweeperConf`."""

    def __init__(self, **options: Any) -> None:
        """`options`: the keys of `config.BatchmixOptunaSweeperConf`, passed on as they are (typed and defaulted there)."""
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self.sweeper.sweep(arguments)
