"""Similarity-matrix MSE: how far in-batch cosine similarities are from the ideal 0/1 matrix.

For L2-normalised queries q (B×D) and positives p (B×D), with I the B×B identity:

    L = 1/B² Σ_ij ( (q @ p.T)_ij - I_ij )²

i.e. each query should have cosine 1 with its own positive and 0 with every in-batch
negative. batchmix studies how this quantity converges for each batch type (monolingual,
cross-lingual, multilingual), so it is both a training loss and a metric logged every step
whatever loss trains: `similarity_mse` (losses/base.py, which logs it for every loss) is the
metric, `SimilarityMSELoss` the same number as a loss module. There is no library implementation
of this exact target (sentence-transformers' MSELoss regresses embeddings, CosineSimilarityLoss
only labelled pairs), hence written here.

Hard negatives: as a loss, each is one more column with target 0 (the B×(B+M) matrix), and with
`mask` the (query, candidate answering it) entries leave the mean (their target would be 1, not 0;
losses/false_negatives.py). The metric logged as `train/mse` stays the B×B in-batch matrix, unmasked, so it
compares across runs with and without hard negatives.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from batchmix.losses.base import BatchLoss, similarity_mse


class SimilarityMSELoss(BatchLoss):
    """`similarity_mse` as a loss; see the module docstring for the formula.

    The temperature is kept (and logged) like every loss's, and not used: the 0/1 target is
    defined on raw cosines, scaling them would change what is measured.
    """

    def compute(self, q: Tensor, p: Tensor, batch: dict[str, Any]) -> Tensor:
        return similarity_mse(q, p, self.candidate_mask(batch))
