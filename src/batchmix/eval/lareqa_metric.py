"""`LAReQAMetric`: every LAReQA metric of one corpus, from embeddings that arrive in shards.

Why a torchmetrics `Metric`: LAReQA's settings rank each question against a pool of *all*
candidates, so no rank can score its shard alone. The metric keeps the embeddings it is given (and
their row numbers) as `cat` states; `compute()` gathers every rank's states (torchmetrics pads
uneven shard sizes and all-gathers on the process group, gloo or NCCL), puts the rows back in corpus
order and scores them with `batchmix.eval.scoring.evaluate_embeddings`, the one scorer `eval.py` and
every test check. Every rank gets the same numbers, so a rank can log them or decide on them (early
stopping, the best checkpoint) without a broadcast.

Rows: queries are numbered over the corpus's languages in `corpus.langs` order (`question_rows`),
candidates likewise (`candidate_rows`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from batchmix.data.corpus import LAReQACorpus
from batchmix.core.errors import BatchmixError
from batchmix.eval.scoring import evaluate_embeddings
from batchmix.eval.trec import RunCollector

TOWERS = ("query", "passage")


def question_rows(corpus: LAReQACorpus) -> dict[str, tuple[int, int]]:
    """(start, end) of each language's questions in the corpus-wide query numbering."""
    return _rows({lang: len(ls.questions) for lang, ls in corpus.languages.items()}, corpus.langs)


def candidate_rows(corpus: LAReQACorpus) -> dict[str, tuple[int, int]]:
    """(start, end) of each language's candidates in the corpus-wide candidate numbering."""
    return _rows({lang: len(ls.candidates) for lang, ls in corpus.languages.items()}, corpus.langs)


def _rows(sizes: dict[str, int], langs: list[str]) -> dict[str, tuple[int, int]]:
    out, start = {}, 0
    for lang in langs:
        out[lang] = (start, start + sizes[lang])
        start += sizes[lang]
    return out


class LAReQAMetric(Metric):
    """`update(tower, rows, embeddings)` with tower `query` or `passage`; `compute()` -> the flat
    metrics of `evaluate_embeddings` (map/multi, map/mono/de, bias/rank_distance, ...).

    `score=False`: only gather the embeddings (`embeddings` after `compute()`), score nothing.
    `runs`: an optional `RunCollector` filled during `compute()` (TREC files; set it on the rank that
    writes them). `width`: the embedding width, so a rank that received no rows still contributes a
    well-shaped empty state to the gather.
    """

    full_state_update = False

    def __init__(self, corpus: LAReQACorpus, width: int, *, score: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.corpus, self.width, self.score = corpus, int(width), score
        # (queries, candidates) by language, as the last compute() assembled them: what the
        # training-free baselines (batchmix.eval.baselines) transform and score again
        self.embeddings: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None
        self.rows = {"query": question_rows(corpus), "passage": candidate_rows(corpus)}
        self.sizes = {tower: max((end for _, end in rows.values()), default=0) for tower, rows in self.rows.items()}
        self.runs: RunCollector | None = None
        for tower in TOWERS:
            self.add_state(f"{tower}_rows", default=[], dist_reduce_fx="cat")
            self.add_state(f"{tower}_emb", default=[], dist_reduce_fx="cat")

    def update(self, tower: str, rows: Tensor, embeddings: Tensor) -> None:
        if tower not in TOWERS:
            raise BatchmixError(f"tower={tower!r} is not one of {list(TOWERS)}")
        getattr(self, f"{tower}_rows").append(rows.to(device=self.device, dtype=torch.long))
        getattr(self, f"{tower}_emb").append(embeddings.detach().to(device=self.device, dtype=torch.float32))

    def sync(self, *args: Any, **kwargs: Any) -> None:
        # A rank with no rows would send torchmetrics' default empty 1-D float state, which cannot be
        # concatenated with the others' [n, width] embeddings: give it empty states of the right shape.
        for tower in TOWERS:
            if not getattr(self, f"{tower}_rows"):
                getattr(self, f"{tower}_rows").append(torch.empty(0, dtype=torch.long, device=self.device))
                getattr(self, f"{tower}_emb").append(torch.empty(0, self.width, device=self.device))
        super().sync(*args, **kwargs)

    def _assemble(self, tower: str) -> dict[str, Tensor]:
        rows_state, emb_state = getattr(self, f"{tower}_rows"), getattr(self, f"{tower}_emb")
        rows = dim_zero_cat(rows_state) if len(rows_state) else torch.empty(0, dtype=torch.long, device=self.device)
        emb = dim_zero_cat(emb_state) if len(emb_state) else torch.empty(0, self.width, device=self.device)
        n = self.sizes[tower]
        full = torch.zeros(n, self.width, device=emb.device)
        seen = torch.zeros(n, dtype=torch.bool, device=emb.device)
        if rows.numel():
            # A row sent twice (a sampler that pads shards by repetition) holds the same embedding twice.
            full[rows] = emb
            seen[rows] = True
        if not bool(seen.all()):
            missing = int((~seen).sum())
            raise BatchmixError(f"{missing} of {n} {tower} rows of {self.corpus.name!r} were never encoded; every rank must validate its shard")
        return {lang: full[a:b] for lang, (a, b) in self.rows[tower].items()}

    def compute(self) -> dict[str, float]:
        """The metrics; with `score=False` ({}: a corpus encoded only to fit the baselines on) the embeddings alone."""
        self.embeddings = (self._assemble("query"), self._assemble("passage"))
        if not self.score:
            return {}
        return evaluate_embeddings(self.corpus, *self.embeddings, progress=False, runs=self.runs)
