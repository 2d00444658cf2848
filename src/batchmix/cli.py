"""Command-line entry points (`python train.py` / `batchmix-train`, `python eval.py` / `batchmix-eval`):
Hydra in, one clear line out on error."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from batchmix.config import CONF_DIR, register_resolvers, validate
from batchmix.errors import BatchmixError

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _train(cfg: DictConfig) -> float:
    try:
        validate(cfg)  # cheap checks first: a typo costs a second, not a Lightning import
        from batchmix.train import train  # heavy imports only once the config is known to be sane

        return train(cfg, HydraConfig.get().runtime.output_dir)["objective"]
    except BatchmixError as err:
        logging.getLogger("batchmix").debug("error", exc_info=True)
        print(f"batchmix: error: {err}", file=sys.stderr)
        sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def _eval(cfg: DictConfig) -> float:
    try:
        from batchmix.evaluate import evaluate

        return evaluate(cfg, HydraConfig.get().runtime.output_dir)["metrics"].get("map/multi", float("nan"))
    except BatchmixError as err:
        print(f"batchmix: error: {err}", file=sys.stderr)
        sys.exit(2)


def train_main() -> None:
    _train()


def eval_main() -> None:
    _eval()
