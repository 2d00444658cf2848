"""Turn token states into one vector per text: `cls` (first token, as DPR / LaBSE) or `mean` (E5, SBERT).

`Pooling(pooling_mode)` in the style of sentence-transformers' `Pooling`: built from `model.pooling`
(the name is what the CLI takes and what a run's `model/batchmix.json` export records), it checks
the name when built, so the pre-flight builds one to check the option.
"""

from __future__ import annotations

import torch
from torch import nn

from batchmix.core.errors import BatchmixError

POOLINGS = ("cls", "mean")


class Pooling(nn.Module):
    """[B, T, H] token states + [B, T] attention mask (1 = real token) -> [B, H]. No parameters."""

    def __init__(self, pooling_mode: str = "mean") -> None:
        super().__init__()
        if pooling_mode not in POOLINGS:
            raise BatchmixError(f"model.pooling={pooling_mode!r} is not one of {list(POOLINGS)}: use model.pooling=mean or model.pooling=cls")
        self.pooling_mode = pooling_mode

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling_mode == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def extra_repr(self) -> str:
        return f"pooling_mode={self.pooling_mode!r}"
