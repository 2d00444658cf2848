"""Turn token states into one vector per text: `cls` (first token, as DPR / LaBSE) or `mean` (E5, SBERT)."""

from __future__ import annotations

import torch

from batchmix.errors import BatchmixError

POOLINGS = ("cls", "mean")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise BatchmixError(f"model.pooling={pooling!r} is not one of {list(POOLINGS)}: use model.pooling=mean or model.pooling=cls")
    return pooling


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """`hidden`: [B, T, H]; `attention_mask`: [B, T] (1 = real token). Returns [B, H]."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
