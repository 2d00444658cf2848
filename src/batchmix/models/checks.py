"""The `model` options checked before any weight loads: the pooling (built, so `Pooling` checks its
own name) and the speed switches. Kept apart from models/factory.py because that module imports
Lightning and transformers (seconds) and the pre-flight must not."""

from __future__ import annotations

from omegaconf import DictConfig

from batchmix.core.errors import BatchmixError
from batchmix.models.pooling import Pooling

# model.trunk_cache (models/trunk_cache.py): where the frozen trunk's states of train_top_layers are kept.
TRUNK_CACHE_MODES = ("disk", "memory", "off")


def check_model(model: DictConfig) -> None:
    """The `model` node's values that its schema (config/schema.py: ModelConfig) cannot check by type."""
    Pooling(model.pooling)
    if model.compile:
        import torch.compiler  # only when compiling: listing the backends imports dynamo (~1 s)

        if model.compile_backend not in torch.compiler.list_backends(exclude_tags=()):
            raise BatchmixError(
                f"model.compile_backend={model.compile_backend!r} is not a torch.compile backend; "
                f"use one of {torch.compiler.list_backends()} (e.g. model.compile_backend=inductor)"
            )
    top = model.train_top_layers
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise BatchmixError(f"model.train_top_layers={top!r} must be a positive number of layers (null: train every layer)")
    if model.trunk_cache not in TRUNK_CACHE_MODES:
        raise BatchmixError(f"model.trunk_cache={model.trunk_cache!r} is not one of {'|'.join(TRUNK_CACHE_MODES)}")
    if top is not None and model.trunk_cache != "off" and model.compile:
        raise BatchmixError("model.compile=true does not reach the cached top layers of model.train_top_layers: "
                            "set model.compile=false, or model.trunk_cache=off")
