"""Similarity-matrix MSE: how far in-batch cosine similarities are from the ideal 0/1 matrix.

For L2-normalised queries q (B×D) and positives p (B×D), with I the B×B identity:

    L = 1/B² Σ_ij ( (q @ p.T)_ij - I_ij )²

i.e. each query should have cosine 1 with its own positive and 0 with every in-batch
negative. batchmix studies how this quantity converges for each batch type (monolingual,
cross-lingual, multilingual), so it is both a training loss and a metric logged every step
whatever loss trains: `similarity_mse` is the metric, `SimilarityMSELoss` the same number as
a loss module. There is no library implementation of this exact target (sentence-transformers'
MSELoss regresses embeddings, CosineSimilarityLoss only labelled pairs), hence written here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from batchmix.losses.infonce import at_least_float32, check_pair_shapes


def similarity_mse(q: Tensor, p: Tensor) -> Tensor:
    """Mean over the B×B matrix of (q @ p.T - I)², as a scalar (at least float32).

    Keeps the autograd graph (the loss uses it); detach the result to log it as a metric.
    """
    check_pair_shapes(q, p)
    similarities = at_least_float32(q) @ at_least_float32(p).T
    target = torch.eye(q.shape[0], dtype=similarities.dtype, device=similarities.device)
    return (similarities - target).square().mean()


class SimilarityMSELoss(nn.Module):
    """`similarity_mse` as a loss module; see the module docstring for the formula."""

    def __init__(self) -> None:  # explicit, so build_loss rejects options this loss does not take
        super().__init__()

    def forward(self, q: Tensor, p: Tensor, temperature: float | Tensor | None = None) -> Tensor:
        """Similarity-matrix MSE of a batch of query/positive embedding pairs.

        `temperature` is accepted so that every batch loss is called the same way, and ignored:
        the 0/1 target is defined on raw cosines, scaling them would change what is measured.
        """
        return similarity_mse(q, p)
