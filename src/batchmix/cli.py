"""Command-line entry points (`python train.py` / `batchmix-train`, `python eval.py` / `batchmix-eval`):
Hydra in, one clear line out on error."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from batchmix.config import CONF_DIR
from batchmix.errors import BatchmixError
from batchmix.console import quiet_console
from batchmix.preflight import check_writable, validate_eval, validate_train


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _train(cfg: DictConfig) -> float:
    try:
        validate_train(cfg)  # cheap checks first (no file read): a typo costs a second, not a Lightning import
        from batchmix.recipes.train import train  # heavy imports only once the config is known to be sane
        quiet_console()  # each log line once, no third-party tips (batchmix/console.py)

        return train(cfg, HydraConfig.get().runtime.output_dir)["objective"]
    except BatchmixError as err:
        logging.getLogger("batchmix").debug("error", exc_info=True)
        print(f"batchmix: error: {err}", file=sys.stderr)
        sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def _eval(cfg: DictConfig) -> float:
    try:
        validate_eval(cfg)  # a wrong data.root, language or option fails before the model loads
        from batchmix.recipes.evaluate import evaluate
        quiet_console()

        return evaluate(cfg, HydraConfig.get().runtime.output_dir)["metrics"].get("map/multi", float("nan"))
    except BatchmixError as err:
        print(f"batchmix: error: {err}", file=sys.stderr)
        sys.exit(2)


class RunDirCheck(Callback):
    """Hydra callback (`hydra.callbacks.run_dir_check` in conf/train.yaml and conf/eval.yaml): an
    unwritable `hydra.run.dir` / `hydra.sweep.dir` is answered with one line before Hydra creates
    the dir itself, where the failure would end in a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(path: Any, key: str) -> None:
        try:
            check_writable(Path(str(path)), key)
        except BatchmixError as err:  # Hydra turns a callback's exception into a warning: exit here
            print(f"batchmix: error: {err}", file=sys.stderr)
            sys.exit(2)


def train_main() -> None:
    _train()


def eval_main() -> None:
    _eval()
