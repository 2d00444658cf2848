"""InfoNCE with in-batch negatives: the contrastive loss most dense retrievers are trained with.

For L2-normalised queries q (B×D) and positives p (B×D), row i of p is query i's positive
and every other row is an in-batch negative (DPR, Karpukhin et al. 2020; the in-batch
negatives loss of arXiv 2408.10536):

    S = q @ p.T / τ                      (B×B cosine similarities scaled by 1/temperature)
    L = -1/B Σ_i log( exp(S_ii) / Σ_j exp(S_ij) )  = cross_entropy(S, arange(B))

(van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding").
Hard negatives (`data.hard_negatives=N`) are M = B·N more columns of S (p is [B + M, D]): each
joins the denominator of its own query and, as in-batch negatives do, of every other query of the
(DDP-gathered) batch (as in sentence-transformers' MNRL with (anchor, positive, negative) triplets and
Tevatron); the label of query i stays column i.
`symmetric=True` averages this with the passage→query direction cross_entropy(S[:, :B].T, arange(B))
(positives only: a hard negative has no query of its own).
With `mask=answers` (default) a candidate j that answers query i (in any language, under any id:
losses/false_negatives.py, hard negatives included) leaves the sum over j, in both directions of
the symmetric loss: S_ij = -inf.
This equals sentence-transformers' MultipleNegativesRankingLoss (and its symmetric variant)
with scale = 1/τ; it is rewritten here only because that class takes raw text features
through a SentenceTransformer, while batchmix hands losses ready-made embeddings and a
temperature that the loss may learn (`learn_temperature`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from batchmix.core.errors import BatchmixError
from batchmix.losses.base import BatchLoss, at_least_float32, check_pair_shapes
from batchmix.core.options import switch


def info_nce(q: Tensor, p: Tensor, temperature: float | Tensor, symmetric: bool = False, masked: Tensor | None = None) -> Tensor:
    """Mean InfoNCE loss (a scalar, at least float32) of a batch of query/positive embedding pairs.

    The similarities are taken in at least float32 whatever the input dtype: at τ = 0.05 a bf16
    cosine (8-bit mantissa, error up to ~0.004) would put up to ~0.08 of noise on every logit.
    At B = 1 there are no negatives and the loss is exactly 0. A number `temperature` must be > 0;
    a tensor one (exp of a learned log-scale, so positive) is not inspected, because reading its
    value would force a device sync every step. `p` may have more rows than `q` (hard negatives after
    the B positives). `masked` (bool [B, C]): logits left out of the softmax (never the diagonal),
    e.g. `false_negatives.shared_key_mask`.
    """
    check_pair_shapes(q, p)
    if not isinstance(temperature, Tensor) and not temperature > 0:
        raise BatchmixError(f"temperature={temperature!r} must be > 0; set e.g. temperature=0.05")
    logits = (at_least_float32(q) @ at_least_float32(p).T) / temperature
    if masked is not None:
        logits = logits.masked_fill(masked, float("-inf"))
    labels = torch.arange(q.shape[0], device=q.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(logits[:, : q.shape[0]].T, labels)) / 2
    return loss


class InfoNCELoss(BatchLoss):
    """Cross-entropy over in-batch similarities at the loss's temperature; see the module docstring."""

    def __init__(self, *, symmetric: bool, **common: Any) -> None:
        super().__init__(**common)
        self.symmetric = switch("loss.symmetric", symmetric)

    def compute(self, q: Tensor, p: Tensor, batch: dict[str, Any]) -> Tensor:
        return info_nce(q, p, self.temperature, self.symmetric, self.candidate_mask(batch))

    def extra_repr(self) -> str:
        return f"symmetric={self.symmetric}, mask={self.mask}"
