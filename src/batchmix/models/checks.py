"""The `model` options checked before any weight loads: the pooling (built, so `Pooling` checks its
own name) and the speed switches. Kept apart from models/factory.py because that module imports
Lightning and transformers (seconds) and the pre-flight must not."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from batchmix.core.errors import BatchmixError
from batchmix.models.pooling import Pooling
from batchmix.core.options import select, switch

# model.trunk_cache (models/trunk_cache.py): where the frozen trunk's states of train_top_layers are kept.
TRUNK_CACHE_MODES = ("disk", "memory", "off")


def check_model(cfg: DictConfig) -> None:
    for key in ("model.gradient_checkpointing", "model.compile"):
        switch(key, OmegaConf.select(cfg, key, default=False))
    Pooling(select(cfg, "model.pooling"))
    backend = OmegaConf.select(cfg, "model.compile_backend", default="inductor")
    if OmegaConf.select(cfg, "model.compile", default=False):
        import torch.compiler  # only when compiling: listing the backends imports dynamo (~1 s)

        if backend not in torch.compiler.list_backends(exclude_tags=()):
            raise BatchmixError(
                f"model.compile_backend={backend!r} is not a torch.compile backend; "
                f"use one of {torch.compiler.list_backends()} (e.g. model.compile_backend=inductor)"
            )
    top = OmegaConf.select(cfg, "model.train_top_layers", default=None)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise BatchmixError(f"model.train_top_layers={top!r} must be a positive number of layers (null: train every layer)")
    mode = OmegaConf.select(cfg, "model.trunk_cache", default="disk")
    if mode not in TRUNK_CACHE_MODES:
        raise BatchmixError(f"model.trunk_cache={mode!r} is not one of {'|'.join(TRUNK_CACHE_MODES)}")
    if top is not None and mode != "off" and OmegaConf.select(cfg, "model.compile", default=False):
        raise BatchmixError("model.compile=true does not reach the cached top layers of model.train_top_layers: "
                            "set model.compile=false, or model.trunk_cache=off")
