"""Multilingual knowledge distillation: pull student embeddings onto a frozen teacher's.

Reimers & Gurevych 2020, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
Distillation": for a pivot-language sentence s_j and its translation t_j, the student M̂ is
trained so that M̂(s_j) ≈ M(s_j) and M̂(t_j) ≈ M(s_j) for the frozen teacher M:

    L = 1/(N·D) Σ_j ‖ student_j - teacher_j ‖²

where row j of `student` embeds a text (a translation, or the pivot text itself) and row j of
`teacher` is the teacher's embedding of the corresponding pivot-language text. This is
`torch.nn.functional.mse_loss` (mean over all N×D elements, as in the paper's code and
sentence-transformers' MSELoss) with the teacher detached, so no gradient can reach it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from batchmix.losses.infonce import at_least_float32


class DistillMSELoss(nn.Module):
    """MSE between student embeddings and detached teacher embeddings; see the module docstring."""

    def __init__(self) -> None:  # explicit, so build_loss rejects options this loss does not take
        super().__init__()

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Mean squared error over all N×D elements, as a scalar (at least float32)."""
        if student.ndim != 2 or student.shape != teacher.shape:
            # F.mse_loss would silently broadcast mismatched shapes; a mismatch here is a pairing bug.
            raise ValueError(
                f"expected student and teacher embeddings of the same shape [N, D], "
                f"got {tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        return F.mse_loss(at_least_float32(student), at_least_float32(teacher.detach()))
