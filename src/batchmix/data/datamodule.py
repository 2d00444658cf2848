"""HybridDataModule: the training DataLoader over `TrainingGroups`, batched by `HybridBatchSampler`.

The sampler decides which (id, query language, positive language) go together; the collator
turns those references into tokenised tensors plus the batch's type and languages, which travel
with the batch so the model can log losses per batch type.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from batchmix.data.corpus import TrainingGroups
from batchmix.models.tokenize import tokenize
from batchmix.sampling.hybrid_batch_sampler import HybridBatchSampler, PairRef


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
    ) -> None:
        self.groups, self.tokenizer = groups, tokenizer
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.query_max_length, self.passage_max_length = query_max_length, passage_max_length
        self.pivot_lang = pivot_lang

    def _tok(self, texts: list[str], prefix: str, max_length: int) -> dict[str, Any]:
        return tokenize(self.tokenizer, texts, prefix, max_length)

    def __call__(self, refs: list[PairRef]) -> dict[str, Any]:
        pairs = self.groups.pairs
        queries = [pairs[r.group][r.query_lang].query for r in refs]
        positives = [pairs[r.group][r.positive_lang].positive for r in refs]
        types = {r.batch_type for r in refs}
        assert len(types) == 1, f"a batch mixes batch types {types}"
        batch = {
            "query": self._tok(queries, self.query_prefix, self.query_max_length),
            "positive": self._tok(positives, self.passage_prefix, self.passage_max_length),
            "batch_type": types.pop(),
            "query_langs": [r.query_lang for r in refs],
            "positive_langs": [r.positive_lang for r in refs],
            "ids": [self.groups.ids[r.group] for r in refs],
            "epoch": refs[0].epoch,
            "index": refs[0].index,
        }
        if self.pivot_lang is not None:
            piv_q = [pairs[r.group].get(self.pivot_lang, pairs[r.group][r.query_lang]).query for r in refs]
            piv_p = [pairs[r.group].get(self.pivot_lang, pairs[r.group][r.positive_lang]).positive for r in refs]
            batch["pivot_query"] = self._tok(piv_q, self.query_prefix, self.query_max_length)
            batch["pivot_positive"] = self._tok(piv_p, self.passage_prefix, self.passage_max_length)
        return batch


class HybridDataModule(L.LightningDataModule):
    def __init__(self, groups: TrainingGroups, sampler: HybridBatchSampler, collator: PairCollator, num_workers: int = 0) -> None:
        super().__init__()
        self.groups, self.sampler, self.collator, self.num_workers = groups, sampler, collator, num_workers

    def setup(self, stage: str) -> None:
        # Under DDP each rank takes its slice of every global batch (the sampler stays global, so
        # all ranks agree on batch types and ids); Lightning's DistributedSampler is switched off
        # (`use_distributed_sampler: false` in conf/trainer/ddp.yaml) because it cannot shard a
        # batch sampler this way.
        if self.trainer is not None and self.trainer.world_size > 1:
            self.sampler.shard(self.trainer.global_rank, self.trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _RefDataset(len(self.groups)),
            batch_sampler=self.sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

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
