"""What a `DualEncoder` is (`ModelSpec`) and how it is optimised (`OptimSpec`): the model's own API.

Built from the `model` and `optim` config nodes (conf/model/*.yaml, conf/train.yaml `optim:`). No
field has a default: every value is written once, in the config, and a node that lacks one is a
one-line error naming it rather than a value made up here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from batchmix.core.errors import BatchmixError


def _node(cls: type, key: str, node: Mapping[str, Any] | DictConfig) -> Any:
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    names = [f.name for f in fields(cls)]
    missing = [name for name in names if name not in values]
    if missing:
        raise BatchmixError(f"the {key} config has no {', '.join(f'{key}.{m}' for m in missing)}: "
                            f"give it (conf/{key}/*.yaml lists every option)")
    return cls(**{name: values[name] for name in names})


@dataclass(frozen=True)
class ModelSpec:
    """The encoder(s) and how they embed: `model.*`."""

    name_or_path: str
    architecture: Mapping[str, Any] | None  # config fields of a random-init encoder (tests), or null
    pooling: str
    normalize: bool
    shared: bool
    query_prefix: str
    passage_prefix: str
    query_max_length: int
    passage_max_length: int
    freeze_embeddings: bool
    train_top_layers: int | None
    trunk_cache: str
    gradient_checkpointing: bool
    compile: bool
    compile_backend: str

    @classmethod
    def of(cls, node: Mapping[str, Any] | DictConfig) -> ModelSpec:
        """The spec of a `model` node (other keys are ignored)."""
        return _node(cls, "model", node)


@dataclass(frozen=True)
class OptimSpec:
    """AdamW with linear warmup and decay: `optim.*`."""

    lr: float
    weight_decay: float
    warmup_ratio: float

    @classmethod
    def of(cls, node: Mapping[str, Any] | DictConfig) -> OptimSpec:
        return _node(cls, "optim", node)
