"""A loss's options as a run gets them: conf/loss/<name>.yaml without `_target_`, with some changed.
The loss classes take no defaults (the YAML holds each value once), so tests build them from here."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from batchmix.config import CONF_DIR


def loss_options(name: str, **changes: Any) -> dict[str, Any]:
    options = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml"), resolve=True)
    options.pop("_target_")
    return {**options, **changes}
