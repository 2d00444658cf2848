"""InfoNCE with in-batch negatives: the contrastive loss most dense retrievers are trained with.

For L2-normalised queries q (B×D) and positives p (B×D), row i of p is query i's positive
and every other row is an in-batch negative (DPR, Karpukhin et al. 2020; the in-batch
negatives loss of arXiv 2408.10536):

    S = q @ p.T / τ                      (B×B cosine similarities scaled by 1/temperature)
    L = -1/B Σ_i log( exp(S_ii) / Σ_j exp(S_ij) )  = cross_entropy(S, arange(B))

(van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding").
`symmetric=True` averages this with the passage→query direction cross_entropy(S.T, arange(B)).
This equals sentence-transformers' MultipleNegativesRankingLoss (and its symmetric variant)
with scale = 1/τ; it is rewritten here only because that class takes raw text features
through a SentenceTransformer, while batchmix hands losses ready-made embeddings and a
temperature that the model may learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from batchmix.errors import BatchmixError


def check_pair_shapes(q: Tensor, p: Tensor) -> None:
    """Raise if q and p are not two equally shaped B×D matrices (row i of p pairs with row i of q)."""
    if q.ndim != 2 or q.shape != p.shape:
        raise ValueError(
            f"expected query and positive embeddings of the same shape [B, D], got {tuple(q.shape)} and {tuple(p.shape)}"
        )


def at_least_float32(x: Tensor) -> Tensor:
    """Upcast half/bfloat16 to float32 (float64 stays float64) before similarities and softmax."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def check_temperature(temperature: float | Tensor) -> None:
    """Reject a non-positive temperature given as a number (a config value).

    A tensor temperature belongs to the model (usually exp of a learned log-scale, so positive);
    it is not inspected, because reading its value would force a device sync every step.
    """
    if not isinstance(temperature, Tensor) and not temperature > 0:
        raise BatchmixError(f"temperature={temperature!r} must be > 0; set e.g. temperature=0.05")


class InfoNCELoss(nn.Module):
    """Cross-entropy over in-batch similarities; see the module docstring for the formula."""

    def __init__(self, symmetric: bool = False) -> None:
        super().__init__()
        self.symmetric = symmetric

    def forward(self, q: Tensor, p: Tensor, temperature: float | Tensor = 0.05) -> Tensor:
        """Mean InfoNCE loss (a scalar, at least float32) of a batch of query/positive embedding pairs.

        The similarities are taken in at least float32 whatever the input dtype: at τ = 0.05 a bf16
        cosine (8-bit mantissa, error up to ~0.004) would put up to ~0.08 of noise on every logit.
        At B = 1 there are no negatives and the loss is exactly 0.
        """
        check_pair_shapes(q, p)
        check_temperature(temperature)
        logits = (at_least_float32(q) @ at_least_float32(p).T) / temperature
        labels = torch.arange(q.shape[0], device=q.device)
        loss = F.cross_entropy(logits, labels)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, labels)) / 2
        return loss

    def extra_repr(self) -> str:
        return f"symmetric={self.symmetric}"
