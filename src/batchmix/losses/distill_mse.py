"""Multilingual knowledge distillation: pull student embeddings onto a frozen teacher's.

Reimers & Gurevych 2020, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
Distillation": for a pivot-language sentence s_j and its translation t_j, the student M̂ is
trained so that M̂(s_j) ≈ M(s_j) and M̂(t_j) ≈ M(s_j) for the frozen teacher M:

    L = 1/(N·D) Σ_j ‖ student_j - teacher_j ‖²

where row j of `student` embeds a text (a translation, or the pivot text itself) and row j of
`teacher` is the teacher's embedding of the corresponding pivot-language text. This is
`torch.nn.functional.mse_loss` (mean over all N×D elements, as in the paper's code and
sentence-transformers' MSELoss) with the teacher detached, so no gradient can reach it.

As a batch loss: the student rows are the batch's queries then positives, the teacher rows the
teacher's embeddings of the same ids' texts in `pivot_lang` (the batch's `pivot_query` /
`pivot_positive`). The teacher (`teacher`: a name or local path, or null for a frozen copy of the
student as it was before training) is built when the loss is bound to its model, so building the
loss in the pre-flight loads nothing. Per example, so not in-batch: nothing to gather under DDP,
and GradCache does not apply. Hard negatives have no teacher target here (distillation regresses
each text onto its pivot translation; there is nothing to push away), so a run with
`data.hard_negatives > 0` and this loss is refused before anything loads rather than encoding them
for nothing.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from batchmix.core.errors import BatchmixError
from batchmix.losses.base import BatchLoss, at_least_float32


def distill_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error over all N×D elements, as a scalar (at least float32); the teacher is detached."""
    if student.ndim != 2 or student.shape != teacher.shape:
        # F.mse_loss would silently broadcast mismatched shapes; a mismatch here is a pairing bug.
        raise ValueError(
            f"expected student and teacher embeddings of the same shape [N, D], "
            f"got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    return F.mse_loss(at_least_float32(student), at_least_float32(teacher.detach()))


class DistillMSELoss(BatchLoss):
    """MSE between student embeddings and the frozen teacher's; see the module docstring."""

    in_batch = False

    def __init__(self, *, teacher: str | None, pivot_lang: str, mask: str = "none", **common: Any) -> None:
        super().__init__(mask=mask, **common)  # a per-example loss has no candidates to mask
        if not isinstance(pivot_lang, str) or not pivot_lang:
            raise BatchmixError(f"loss.pivot_lang={pivot_lang!r} must be a language code (e.g. loss.pivot_lang=en)")
        self.teacher_name, self.pivot_lang = teacher, pivot_lang
        self.teacher: nn.Module | None = None
        self._encode: Callable[..., Tensor] | None = None

    def bind(self, model: nn.Module) -> None:
        """Build the frozen teacher (Reimers & Gurevych: the model as it was before training, unless
        `teacher` names another) and embed with the model's pooling and normalisation."""
        if self.teacher_name:
            from batchmix.models.loading import load_encoder  # deferred: imports transformers

            teacher = load_encoder(self.teacher_name)
        else:
            teacher = copy.deepcopy(model.query_encoder)
        self.teacher = teacher.requires_grad_(False).eval()
        self._encode = model.encode

    def compute(self, q: Tensor, p: Tensor, batch: dict[str, Any]) -> Tensor:
        assert self.teacher is not None and self._encode is not None, "distill_mse: bind(model) builds the teacher"
        with torch.no_grad():
            tq = self._encode(batch["pivot_query"], model=self.teacher)
            tp = self._encode(batch["pivot_positive"], model=self.teacher)
        return distill_mse(torch.cat([q, p[: q.shape[0]]]), torch.cat([tq, tp]))
