"""HybridDataModule: the training DataLoader over `TrainingGroups`, batched by `HybridBatchSampler`.

The sampler decides which (id, query language, positive language) go together; the collator
turns those references into tokenised tensors plus the batch's type and languages, which travel
with the batch so the model can log losses per batch type.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import PreTrainedTokenizerBase

from batchmix.data.checks import check_num_workers
from batchmix.data.corpus import TrainingGroups
from batchmix.data.negatives import check_hard_negatives, check_negatives_options, pick_negatives
from batchmix.data.pretokenize import PretokenizedPairs, pad, text_settings
from batchmix.data.tokenize import tokenize
from batchmix.mixing.sampler import HybridBatchSampler, PairRef


class _RefDataset(Dataset):
    """Identity dataset: the batch sampler's items already say everything about an example."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, ref: PairRef) -> PairRef:
        return ref


class PairCollator:
    """References -> {'query', 'positive' (tokenised), 'batch_type', langs, ids, epoch, index}.

    With `pivot_lang` set (distillation) the batch also carries the id's query and positive in the
    pivot language (or, for an id without it, in the pair's own language).

    With `hard_negatives=N` the batch also carries `negative`: N hard negatives per query, query i's
    in rows i*N .. i*N+N-1 (chosen by `batchmix.data.negatives.pick_negatives` under `negatives_lang`),
    tokenised as passages, with their `negative_ids` (the parallel id each answers, or None: what
    `loss.mask=ids` reads), `negative_answers` (every id each answers) and `negative_langs`.

    With `pretokenized` (from `batchmix.data.pretokenize.pretokenize`, built from the same groups
    and settings) texts are not tokenised here: their cached ids are looked up, pivots included,
    and padded per batch, giving the very tensors on-the-fly tokenisation gives. The collator is
    plain picklable data, so it runs in DataLoader worker processes (`data.num_workers`).
    """

    def __init__(
        self,
        groups: TrainingGroups,
        tokenizer: PreTrainedTokenizerBase,
        *,
        query_prefix: str = "",
        passage_prefix: str = "",
        query_max_length: int = 64,
        passage_max_length: int = 128,
        pivot_lang: str | None = None,
        pretokenized: PretokenizedPairs | None = None,
        hard_negatives: int = 0,
        negatives_lang: str = "any",
    ) -> None:
        self.groups, self.tokenizer = groups, tokenizer
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.query_max_length, self.passage_max_length = query_max_length, passage_max_length
        self.pivot_lang = pivot_lang
        if pretokenized is not None:
            pretokenized.check_compatible(groups, text_settings(query_prefix, passage_prefix, query_max_length, passage_max_length))
        self.pretokenized = pretokenized
        self.hard_negatives, self.negatives_lang = check_negatives_options(hard_negatives, negatives_lang)
        check_hard_negatives(groups, self.hard_negatives, self.negatives_lang)

    def _encode(self, side: str, keys: list[tuple[int, str]]) -> dict[str, Any]:
        """The `side` ("query" or "positive") texts of (group, language) `keys`, tokenised or looked up."""
        if self.pretokenized is not None:
            ids = self.pretokenized.query_ids if side == "query" else self.pretokenized.positive_ids
            return pad(self.tokenizer, [ids(g, lang) for g, lang in keys])
        tower = "query" if side == "query" else "passage"
        texts = [getattr(self.groups.pairs[g][lang], side) for g, lang in keys]
        return tokenize(self.tokenizer, texts, getattr(self, f"{tower}_prefix"), getattr(self, f"{tower}_max_length"))

    def __call__(self, refs: list[PairRef]) -> dict[str, Any]:
        types = {r.batch_type for r in refs}
        assert len(types) == 1, f"a batch mixes batch types {types}"
        batch = {
            "query": self._encode("query", [(r.group, r.query_lang) for r in refs]),
            "positive": self._encode("positive", [(r.group, r.positive_lang) for r in refs]),
            "batch_type": types.pop(),
            "query_langs": [r.query_lang for r in refs],
            "positive_langs": [r.positive_lang for r in refs],
            "ids": [self.groups.ids[r.group] for r in refs],
            # The ids each positive answers (its own, those sharing its text, the data's `answers`):
            # `loss.mask=answers` drops it as a negative of all of their queries.
            "answers": [sorted(self.groups.positive_answers(r.group, r.positive_lang)) for r in refs],
            "epoch": refs[0].epoch,
            "index": refs[0].index,
        }
        if self.hard_negatives:
            # Not pretokenised: negatives are chosen per (id, positive language) as batches are made.
            negatives = [neg for r in refs for neg in pick_negatives(self.groups, r.group, r.positive_lang, self.hard_negatives, self.negatives_lang)]
            batch["negative"] = tokenize(self.tokenizer, [n.text for n in negatives], self.passage_prefix, self.passage_max_length)
            batch["negative_ids"] = [n.id for n in negatives]
            batch["negative_answers"] = [sorted(self.groups.negative_answers(n)) for n in negatives]
            batch["negative_langs"] = [n.lang for n in negatives]
        if self.pivot_lang is not None:
            pairs, pivot = self.groups.pairs, self.pivot_lang
            for side in ("query", "positive"):
                keys = [(r.group, pivot if pivot in pairs[r.group] else getattr(r, f"{side}_lang")) for r in refs]
                batch[f"pivot_{side}"] = self._encode(side, keys)
        return batch


class _EpochAwareBatches(Sampler[list[PairRef]]):
    """The hybrid sampler as a DataLoader `batch_sampler` that Lightning's `set_epoch` reaches.

    Lightning calls `set_epoch` on `dataloader.sampler` and on `dataloader.batch_sampler.sampler`
    (`lightning.fabric.utilities.data._set_sampler_epoch`), never on the batch sampler itself:
    without this, epoch 2 would start at epoch 1's end and yield no batch.
    """

    def __init__(self, sampler: HybridBatchSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[PairRef]]:
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class _StartOnFirstBatch:
    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start, self._iterator = start, None

    def __iter__(self) -> "_StartOnFirstBatch":
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


class _LazyDataLoader(DataLoader):
    """A DataLoader whose iterator starts (and its workers prefetch) at the first batch requested.

    Why: Lightning creates the training iterator early (to estimate the steps for the LR schedule)
    and only then restores a checkpoint's loop state and calls `set_epoch`. A worker-backed
    iterator at once pulls `prefetch_factor * num_workers` batches from the sampler, which would
    then come from the epoch and position before the resume. Started at the first `next`, every
    iterator reads the sampler state the model is about to continue from, with or without workers.
    """

    def __iter__(self) -> Iterator[Any]:
        return _StartOnFirstBatch(super().__iter__)

    # Stateful (the hybrid sampler's epoch and consumed position), so Lightning knows that a mid-epoch
    # checkpoint resumes this data stream exactly (and does not warn that it cannot).
    def state_dict(self) -> dict[str, int]:
        return self.batch_sampler.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.sampler.load_state_dict(state)


class HybridDataModule(L.LightningDataModule):
    """Training batches from the hybrid sampler; `val_loaders(trainer)` gives fit's periodic validation
    loaders (`batchmix.eval.validation.LAReQAValidation.val_dataloaders`; none without it)."""

    def __init__(self, groups: TrainingGroups, sampler: HybridBatchSampler, collator: PairCollator, num_workers: int = 0,
                 val_loaders: Callable[[L.Trainer], list[DataLoader]] | None = None) -> None:
        super().__init__()
        check_num_workers(num_workers)
        self.groups, self.sampler, self.collator, self.num_workers = groups, sampler, collator, num_workers
        self.val_loaders = val_loaders

    def setup(self, stage: str) -> None:
        # Under DDP each rank takes its slice of every global batch (the sampler stays global, so
        # all ranks agree on batch types and ids); Lightning's DistributedSampler is switched off
        # (`use_distributed_sampler: false` in conf/trainer/ddp.yaml) because it cannot shard a
        # batch sampler this way.
        if self.trainer is not None and self.trainer.world_size > 1:
            self.sampler.shard(self.trainer.global_rank, self.trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        return _LazyDataLoader(
            _RefDataset(len(self.groups)),
            batch_sampler=_EpochAwareBatches(self.sampler),
            collate_fn=self.collator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Each new DataLoader iterator draws its workers' base seed from this generator; without
            # one it draws from the global torch RNG, which dropout also uses, and persistent
            # workers create one iterator per fit instead of one per epoch, so the number of workers
            # would change the dropout masks from epoch 2 on. (The collator uses no randomness.)
            generator=torch.Generator().manual_seed(self.sampler.seed),
        )

    def val_dataloader(self) -> list[DataLoader]:
        return self.val_loaders(self.trainer) if self.val_loaders is not None else []

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        # Runs in the main process just before the batch reaches the model: the sampler's resume
        # position counts consumed batches, not the ones the DataLoader prefetched.
        if "epoch" in batch and self.trainer is not None and self.trainer.training:
            self.sampler.mark_consumed(batch["epoch"], batch["index"])
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
