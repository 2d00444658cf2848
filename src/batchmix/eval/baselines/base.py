"""What a training-free fix for language bias is: fitted once on embeddings of training-article text,
then applied to the embeddings an evaluation scores (queries and candidates, per language).

`Embeddings` maps a language code to its rows ([n, D], L2-normalised). A fix returns new rows for
the languages it transforms; every row is re-normalised after the transform, so the scorer's dot
product stays a cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from batchmix.data.corpus import LAReQACorpus

Embeddings = dict[str, Tensor]


@dataclass(frozen=True)
class FitSample:
    """The text a fix is estimated on, encoded by the model under evaluation: a small LAReQA corpus
    (sampled training questions and, as candidates, only their answer sentences) and its embeddings,
    `queries[L]` / `candidates[L]` in corpus order. The same question id in two languages is a
    translation pair, and so are its two answer sentences: XQuAD-R is 11-way parallel."""

    corpus: LAReQACorpus
    queries: Embeddings
    candidates: Embeddings

    @property
    def langs(self) -> list[str]:
        return self.corpus.langs


class Baseline(Protocol):
    """A fix: `fit` on a sample, then `transform` (queries, candidates) of the languages it knows."""

    name: str

    def fit(self, sample: FitSample) -> None: ...

    def uncovered(self, langs: list[str]) -> list[str]:
        """The languages of `langs` this fit cannot transform ([]: it covers them all)."""
        ...

    def transform(self, queries: Embeddings, candidates: Embeddings) -> tuple[Embeddings, Embeddings]: ...


def renormalise(rows: Tensor) -> Tensor:
    return torch.nn.functional.normalize(rows, dim=-1)
