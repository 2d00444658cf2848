"""Batch losses, each built from its config (`conf/loss/<name>.yaml`, `_target_` = the class).

The package exports what a config or a new loss names: the loss classes (`_target_:
batchmix.losses.InfoNCELoss`, ...), their base `BatchLoss` and its `LossOutput`, and `build_loss`.

`build_loss(cfg)` instantiates one with all of its config and turns every mistake (an unknown
`_target_`, an option the loss does not take, a bad value) into one `batchmix: error:` line. Every
loss subclasses `BatchLoss` (losses/base.py: the one interface) and keeps its formula and paper
in its module docstring, one loss per file.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from batchmix.config import CONF_DIR
from batchmix.losses.base import BatchLoss, LossOutput
from batchmix.losses.distill_mse import DistillMSELoss
from batchmix.losses.infonce import InfoNCELoss
from batchmix.losses.similarity_mse import SimilarityMSELoss
from batchmix.core.options import build


def loss_names() -> list[str]:
    """The losses a run can pick with `loss=<name>`: the configs in conf/loss/."""
    return sorted(path.stem for path in (CONF_DIR / "loss").glob("*.yaml"))


def build_loss(cfg: Mapping[str, Any]) -> BatchLoss:
    """The loss of a `loss` config: its `_target_` class called with every other key."""
    return build(cfg, "loss", loss_names(), "infonce", base=BatchLoss)


def loss_class(target: Any) -> type[BatchLoss]:
    """The class a `loss._target_` names, to read its class properties (e.g. `in_batch`) before
    building it; `BatchLoss` for a target that names none (`build_loss` reports that)."""
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return BatchLoss
    return cls if isinstance(cls, type) and issubclass(cls, BatchLoss) else BatchLoss


__all__ = [
    "BatchLoss",
    "DistillMSELoss",
    "InfoNCELoss",
    "LossOutput",
    "SimilarityMSELoss",
    "build_loss",
    "loss_class",
    "loss_names",
]
