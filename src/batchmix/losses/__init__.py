"""Batch losses, selected by name from the config (`loss=infonce`).

Every loss takes L2-normalised embeddings; `similarity_mse` is also logged as a metric
on every training step whatever loss trains.
"""

from __future__ import annotations

import inspect

from torch import nn

from batchmix.errors import BatchmixError
from batchmix.losses.distill_mse import DistillMSELoss
from batchmix.losses.infonce import InfoNCELoss
from batchmix.losses.similarity_mse import SimilarityMSELoss, similarity_mse

LOSSES: dict[str, type[nn.Module]] = {
    "infonce": InfoNCELoss,
    "mse": SimilarityMSELoss,
    "distill_mse": DistillMSELoss,
}


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """Instantiate the loss registered under `name` with its options (e.g. symmetric=True)."""
    if name not in LOSSES:
        valid = ", ".join(sorted(LOSSES))
        raise BatchmixError(f"unknown loss {name!r}; valid names: {valid} (set e.g. loss=infonce)")
    loss_class = LOSSES[name]
    try:
        inspect.signature(loss_class).bind(**kwargs)
    except TypeError:
        accepted = ", ".join(inspect.signature(loss_class).parameters) or "no options"
        raise BatchmixError(
            f"loss {name!r} got unknown option(s) {', '.join(sorted(kwargs))}; it accepts: {accepted}"
        ) from None
    return loss_class(**kwargs)


__all__ = [
    "LOSSES",
    "DistillMSELoss",
    "InfoNCELoss",
    "SimilarityMSELoss",
    "build_loss",
    "similarity_mse",
]
