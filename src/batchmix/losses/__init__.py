"""Batch losses, each built from its config (`conf/loss/<name>.yaml`, `_target_` = the class).

`build_loss(cfg)` instantiates one with all of its config and turns every mistake (an unknown
`_target_`, an option the loss does not take, a bad value) into one `batchmix: error:` line. Every
loss subclasses `BatchLoss` (losses/base.py: the one interface) and keeps its formula and paper
in its module docstring, one loss per file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from batchmix.config import CONF_DIR
from batchmix.losses.base import BatchLoss, LossOutput
from batchmix.losses.distill_mse import DistillMSELoss
from batchmix.losses.infonce import InfoNCELoss
from batchmix.losses.similarity_mse import SimilarityMSELoss
from batchmix.core.options import build


def loss_names() -> list[str]:
    """The losses a run can pick with `loss=<name>`: the configs in conf/loss/."""
    return sorted(path.stem for path in (CONF_DIR / "loss").glob("*.yaml"))


def loss_choice(cfg: Mapping[str, Any]) -> str:
    """The `loss=<name>` a loss config came from (the conf/loss file with its `_target_`), for messages."""
    target = cfg["_target_"]
    return next((name for name in loss_names() if OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml")["_target_"] == target), target)


def build_loss(cfg: Mapping[str, Any]) -> BatchLoss:
    """The loss of a `loss` config: its `_target_` class called with every other key."""
    return build(cfg, "loss", loss_names(), "infonce", base=BatchLoss)


__all__ = [
    "BatchLoss",
    "DistillMSELoss",
    "InfoNCELoss",
    "LossOutput",
    "SimilarityMSELoss",
    "build_loss",
    "loss_choice",
    "loss_names",
]
