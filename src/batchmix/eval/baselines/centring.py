"""Per-language mean centring: subtract each language's mean query and mean candidate embedding.

The simplest fix for language bias: what all texts of one language share (their mean) is mostly
language identity, not meaning, so removing it lets a query's nearest candidates come from any
language (a common baseline in the LAReQA line of work; Yang, Yang, Cer and Darve 2021 compare
against it). Queries and candidates are centred separately: each tower has its own prefix
(`query: ` / `passage: `), so its own mean.
"""

from __future__ import annotations

from batchmix.eval.baselines.base import Embeddings, FitSample, renormalise


class Centring:
    name = "centring"

    def __init__(self) -> None:
        self.query_mean: Embeddings = {}
        self.candidate_mean: Embeddings = {}

    def fit(self, sample: FitSample) -> None:
        self.query_mean = {lang: rows.mean(dim=0) for lang, rows in sample.queries.items() if len(rows)}
        self.candidate_mean = {lang: rows.mean(dim=0) for lang, rows in sample.candidates.items() if len(rows)}

    def uncovered(self, langs: list[str]) -> list[str]:
        return [lang for lang in langs if lang not in self.query_mean or lang not in self.candidate_mean]

    def transform(self, queries: Embeddings, candidates: Embeddings) -> tuple[Embeddings, Embeddings]:
        return ({lang: renormalise(rows - self.query_mean[lang]) for lang, rows in queries.items()},
                {lang: renormalise(rows - self.candidate_mean[lang]) for lang, rows in candidates.items()})
