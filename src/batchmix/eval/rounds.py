"""An evaluation round: the corpora one Lightning validation loop encodes and scores.

A round holds named corpora (`val`, the reported split `test`, each `eval.sets` entry), one
`LAReQAMetric` per corpus, and one DataLoader per (corpus, tower) that yields tokenised batches of
its texts. `DualEncoder.validation_step` encodes a batch on the run's device under the trainer's
precision; `batchmix.eval.validation.LAReQAValidation` feeds the embeddings to the round and scores.

Sharding (why by batch, not by text): the texts of each loader are sorted by length (little padding)
and cut into batches; rank r encodes batches r, r + W, r + 2W, ... So every batch, and so every
embedding, is the one a single process computes, and the DDP metrics equal the single-device ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from batchmix.data.corpus import LAReQACorpus
from batchmix.eval.baselines import FitSample, baseline_metrics, check_baselines, fit_baselines
from batchmix.eval.lareqa_metric import LAReQAMetric
from batchmix.eval.scoring import check_candidates, candidate_texts
from batchmix.eval.settings import BASELINE_FIT

Tokenize = Callable[[list[str], str], dict[str, Tensor]]


def shard_batches(lengths: list[int], batch_size: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """This rank's batches of row numbers: rows sorted by length (longest first, so a batch too big for
    the device fails at once), cut into equal batches of at most `batch_size`, every `world`-th batch
    from `rank`. With fewer batches than ranks the batches are made smaller, so every rank has one."""
    n = len(lengths)
    if n == 0:
        return []
    count = max(math.ceil(n / batch_size), min(n, world))
    order = sorted(range(n), key=lambda i: -lengths[i])
    # `count` batches as even as integers allow (sizes differ by at most one), so there are exactly
    # `count` of them and every rank gets one when count >= world.
    batches = [order[i * n // count : (i + 1) * n // count] for i in range(count)]
    return batches[rank::world]


class EvalRound:
    """What one validation loop scores: `corpora` by name; `compute()` -> {name: flat metrics}."""

    def __init__(self, corpora: Mapping[str, LAReQACorpus], *, tokenize: Tokenize, batch_size: int,
                 candidates: str = "sentence", width: int, baselines: Mapping[str, Any] | None = None,
                 fit: LAReQACorpus | None = None) -> None:
        """`baselines` (the `eval.baselines` options) and `fit` (their fit text, `baselines.fit_corpus`):
        also score each training-free fix on every corpus of the round; either None: none."""
        check_candidates(candidates)
        self.baselines = dict(baselines) if baselines is not None and fit is not None else None
        self.methods = check_baselines(self.baselines) if self.baselines else []
        if BASELINE_FIT in corpora:
            raise ValueError(f"{BASELINE_FIT!r} is the round's own key for the baselines' fit text; name the corpus otherwise")
        self.corpora = {**corpora, **({BASELINE_FIT: fit} if self.methods else {})}
        self.tokenize, self.batch_size = tokenize, int(batch_size)
        self.metrics = {key: LAReQAMetric(corpus, width, score=key != BASELINE_FIT) for key, corpus in self.corpora.items()}
        # One loader per (corpus, tower), in this order: `dataloader_idx` indexes this list.
        self.parts: list[tuple[str, str, list[str]]] = []
        for key, corpus in self.corpora.items():
            questions = [q for lang in corpus.langs for q in corpus.languages[lang].questions]
            passages = [t for lang in corpus.langs for t in candidate_texts(corpus.languages[lang], candidates)]
            self.parts += [(key, "query", questions), (key, "passage", passages)]

    def pool_size(self, key: str) -> tuple[int, int]:
        """(questions, candidates) of corpus `key`: the work of one round on it."""
        sizes = {tower: len(texts) for k, tower, texts in self.parts if k == key}
        return sizes["query"], sizes["passage"]

    def dataloaders(self, rank: int = 0, world: int = 1) -> list[DataLoader]:
        loaders = []
        for _, tower, texts in self.parts:
            batches = shard_batches([len(t) for t in texts], self.batch_size, rank, world)
            # batch_size=None: each item is already a batch (a list of rows), collated on its own. A
            # generator of its own: a DataLoader iterator draws its seed from the global torch RNG
            # otherwise, so validating would shift the dropout masks of every later training step.
            loaders.append(DataLoader(batches, batch_size=None, shuffle=False, collate_fn=self._collate(tower, texts),
                                      generator=torch.Generator()))
        return loaders

    def _collate(self, tower: str, texts: list[str]) -> Callable[[list[int]], dict[str, Any]]:
        def collate(rows: list[int]) -> dict[str, Any]:
            return {"features": self.tokenize([texts[i] for i in rows], tower), "rows": torch.tensor(rows), "tower": tower}

        return collate

    def reset(self, device: torch.device) -> None:
        for metric in self.metrics.values():
            metric.reset()
            metric.to(device)

    def update(self, dataloader_idx: int, rows: Tensor, embeddings: Tensor) -> None:
        key, tower, _ = self.parts[dataloader_idx]
        self.metrics[key].update(tower, rows, embeddings)

    def compute(self) -> dict[str, dict[str, float]]:
        """{corpus key: metrics}, each with the baselines' `<method>/<metric>` keys when the round has them."""
        out = {key: dict(metric.compute()) for key, metric in self.metrics.items() if key != BASELINE_FIT}
        if self.methods:
            fit = self.metrics[BASELINE_FIT]
            fit.compute()
            fitted = fit_baselines(self.methods, self.baselines, FitSample(self.corpora[BASELINE_FIT], *fit.embeddings))
            for key, scores in out.items():
                scores.update(baseline_metrics(fitted, self.corpora[key], *self.metrics[key].embeddings))
        return out


class EvalDataModule(L.LightningDataModule):
    """The loaders of one round for `trainer.validate`; built when the loop asks for them, after the
    strategy knows this process's rank."""

    def __init__(self, round_: EvalRound) -> None:
        super().__init__()
        self.round = round_

    def val_dataloader(self) -> list[DataLoader]:
        return self.round.dataloaders(self.trainer.global_rank, self.trainer.world_size)

