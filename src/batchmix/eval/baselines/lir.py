"""LIR, Language Information Removal (Yang, Yang, Cer and Darve, EMNLP 2021, arXiv 2109.04727):
project out the principal directions of each language's embeddings.

For a weakly aligned multilingual encoder the top singular vectors of one language's embedding
matrix mostly encode *which language* it is, not what it says; removing them
(e <- e - C_L^T C_L e, C_L the top `rank` right singular vectors of language L's matrix,
uncentred as in the paper) leaves the semantic part. The paper evaluated it on LAReQA. The matrix
here stacks the language's sampled questions and their answer sentences; both towers are projected.
`rank` is fixed before any run (default 1), never tuned on a scored split.
"""

from __future__ import annotations

import torch

from batchmix.eval.baselines.base import Embeddings, FitSample, renormalise


class LIR:
    name = "lir"

    def __init__(self, rank: int = 1) -> None:
        self.rank = int(rank)
        self.directions: Embeddings = {}

    def fit(self, sample: FitSample) -> None:
        self.directions = {}
        for lang in sample.langs:
            matrix = torch.cat([sample.queries[lang], sample.candidates[lang]]).double()
            if matrix.shape[0] < self.rank:
                continue
            _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
            self.directions[lang] = vh[: self.rank].to(sample.queries[lang].dtype)

    def uncovered(self, langs: list[str]) -> list[str]:
        return [lang for lang in langs if lang not in self.directions]

    def _project(self, side: Embeddings) -> Embeddings:
        return {lang: renormalise(rows - (rows @ self.directions[lang].T) @ self.directions[lang]) for lang, rows in side.items()}

    def transform(self, queries: Embeddings, candidates: Embeddings) -> tuple[Embeddings, Embeddings]:
        return self._project(queries), self._project(candidates)
