"""HybridBatchSampler: batches that each have one batch type (`batchmix.mixing.batch_types`), mixed at a ratio.

What a batch contains decides what in-batch negatives a dual encoder learns from
(arXiv 2408.10536). Each batch has exactly one type (mono, cross, multi, or a registered one); the
type's `draw` picks its ids and the query and positive languages of each pair.

Per epoch the number of batches of each type is exactly the ratio's largest-remainder share of
``batches_per_epoch``; the order of types is shuffled. No id appears twice in a batch (a repeated
id would be a false negative). Ids are drawn from a per-epoch shuffled queue, so an epoch covers
the ids evenly. With ``exclusive`` (``data.sampler.avoid_shared_answers``: for each id, the ids
whose queries share an answer with it) no two ids of a batch exclude each other, so no in-batch
candidate answers another query of its batch; a skipped id keeps its place in the queue, and the
per-type counts are unchanged. The whole epoch is a pure function of ``(seed, epoch)``: ``state_dict()`` only
needs the epoch and how many batches were consumed, and a resumed run continues the same
sequence. Under DDP every rank plans the same global batches and yields its own contiguous
slice of each (``shard(rank, world_size)``), so a global batch still has one type and no id twice
across ranks. This is written by hand because no maintained library samples typed, language-
constrained batches; it is a plain ``torch.utils.data.Sampler`` usable as a DataLoader
``batch_sampler``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
from torch.utils.data import Sampler

from batchmix.mixing.batch_types import DrawContext, get_batch_type
from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio

MONO_MODES = ("batch", "pair")


class PairRef(NamedTuple):
    """One training example: group (id) index, the query's and the positive's language, batch type,
    and where its batch sits in the schedule (`epoch`, `index`), so a consumer can report progress."""

    group: int
    query_lang: str
    positive_lang: str
    batch_type: str
    epoch: int = 0
    index: int = 0


class HybridBatchSampler(Sampler[list[PairRef]]):
    def __init__(
        self,
        group_langs: Sequence[Sequence[str]],
        batch_size: int,
        ratio: Ratio,
        *,
        batches_per_epoch: int | None = None,
        mono_mode: str = "batch",
        seed: int = 0,
        exclusive: Sequence[frozenset[int]] | None = None,
    ) -> None:
        if mono_mode not in MONO_MODES:
            raise BatchmixError(f"data.sampler.mono_mode={mono_mode!r} is not one of {list(MONO_MODES)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BatchmixError(f"batch_size={batch_size!r} must be a positive integer")
        self.group_langs = [tuple(sorted(set(langs))) for langs in group_langs]
        self.batch_size = batch_size
        self.ratio = ratio
        self.mono_mode = mono_mode
        self.seed = int(seed)
        n = len(self.group_langs)
        if exclusive is not None and len(exclusive) != n:
            raise BatchmixError(f"exclusive has {len(exclusive)} entries for {n} training ids")
        self.exclusive = exclusive
        if batches_per_epoch is None:
            batches_per_epoch = max(1, n // batch_size)
        if not isinstance(batches_per_epoch, int) or batches_per_epoch < 1:
            raise BatchmixError(f"batches_per_epoch={batches_per_epoch!r} must be a positive integer")
        self.batches_per_epoch = batches_per_epoch
        self.languages = sorted({lang for langs in self.group_langs for lang in langs})
        ids_with_lang = {lang: [i for i, ls in enumerate(self.group_langs) if lang in ls] for lang in self.languages}
        self._context = DrawContext(self.group_langs, ids_with_lang, batch_size, mono_mode)
        self._check_feasible()
        self.epoch = 0
        self.position = 0  # batches of `self.epoch` already consumed
        self.rank, self.world_size = 0, 1

    # ---------------------------------------------------------------- feasibility
    def _check_feasible(self) -> None:
        n = len(self.group_langs)
        if n < self.batch_size:
            raise BatchmixError(
                f"batch_size={self.batch_size} is larger than the number of distinct training ids ({n}): "
                f"a batch cannot hold the same id twice; lower batch_size to <= {n}"
            )
        if self.exclusive is not None:
            free = self._independent_ids()
            if free < self.batch_size:
                raise BatchmixError(
                    f"data.sampler.avoid_shared_answers=true: at most {free} training ids can share a batch without "
                    f"two sharing an answer, fewer than batch_size={self.batch_size}; lower batch_size or set it to false"
                )
        for name, share in self.ratio.as_dict().items():
            check = get_batch_type(name).check
            if share > 0 and check is not None:
                check(self._context, share)

    def _independent_ids(self) -> int:
        """How many ids a greedy pass puts together with no two excluding each other (a lower bound
        of the largest such set: feasibility of one batch, not of every type's language constraint)."""
        taken: set[int] = set()
        for i in sorted(range(len(self.group_langs)), key=lambda i: len(self.exclusive[i])):
            if not self.exclusive[i] & taken:
                taken.add(i)
        return len(taken)

    # ---------------------------------------------------------------- plan
    def __len__(self) -> int:
        return self.batches_per_epoch

    def plan_epoch(self, epoch: int) -> list[list[PairRef]]:
        """Every batch of `epoch`, deterministic in `(seed, epoch)`."""
        rng = np.random.default_rng([self.seed, epoch])
        counts = self.ratio.counts(self.batches_per_epoch)
        types = np.array([t for t, c in counts.items() for _ in range(c)])
        types = types[rng.permutation(len(types))]
        queue: deque[int] = deque()
        ctx = replace(self._context, rng=rng, take=lambda eligible: self._take(eligible, rng, queue))
        plan = []
        for index, t in enumerate(types):
            name = str(t)
            plan.append([PairRef(i, q, p, name, epoch, index) for i, q, p in get_batch_type(name).draw(ctx)])
        return plan

    def _take(self, eligible: Callable[[int], bool], rng: np.random.Generator, queue: deque[int]) -> list[int]:
        """Next `batch_size` distinct eligible ids from the shuffled queue; skipped ids keep their place."""
        chosen: list[int] = []
        seen: set[int] = set()
        skipped: list[int] = []
        budget = 3 * len(self.group_langs) + self.batch_size  # feasibility was checked; this only guards bugs
        while len(chosen) < self.batch_size:
            if not queue:
                queue.extend(int(i) for i in rng.permutation(len(self.group_langs)))
            i = queue.popleft()
            if i not in seen and eligible(i) and (self.exclusive is None or not self.exclusive[i] & seen):
                chosen.append(i)
                seen.add(i)
            else:
                skipped.append(i)
            budget -= 1
            if budget < 0:  # only where avoid_shared_answers leaves too few ids a type's languages allow
                raise BatchmixError(f"the sampler found no {self.batch_size} ids for a batch that {'share no answer and ' if self.exclusive else ''}"
                                    f"the batch type allows; lower batch_size{' or set data.sampler.avoid_shared_answers=false' if self.exclusive else ''}")
        queue.extendleft(reversed(skipped))
        return chosen

    # ---------------------------------------------------------------- sharding
    def shard(self, rank: int, world_size: int) -> None:
        """Yield only rank `rank`'s slice of each global batch (`batch_size` stays the global size).

        Every rank plans the same epoch (a pure function of seed and epoch), so the slices of one
        global batch are disjoint and share its batch type; concatenated in rank order they are the
        single-process batch.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise BatchmixError(f"invalid shard rank={rank} of world_size={world_size}")
        if self.batch_size % world_size:
            raise BatchmixError(
                f"data.batch_size={self.batch_size} (the global batch) is not divisible by the {world_size} processes; "
                f"use a multiple of {world_size}, e.g. data.batch_size={self.batch_size - self.batch_size % world_size or world_size}"
            )
        self.rank, self.world_size = int(rank), int(world_size)

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    # ---------------------------------------------------------------- iteration and state
    def __iter__(self) -> Iterator[list[PairRef]]:
        epoch, start = self.epoch, self.position
        lo = self.rank * self.local_batch_size
        for index, batch in enumerate(self.plan_epoch(epoch)[start:], start=start):
            self.position = index + 1
            yield batch[lo : lo + self.local_batch_size]
        self.epoch, self.position = epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start; keeps a restored position if the epoch matches."""
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def mark_consumed(self, epoch: int, index: int) -> None:
        """Record that batch `index` of `epoch` reached the model (DataLoader prefetch runs ahead of it)."""
        self.epoch, self.position = int(epoch), int(index) + 1

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["seed"]) != self.seed:
            raise BatchmixError(
                f"cannot resume: the checkpoint's sampler seed {state['seed']} differs from seed={self.seed}; "
                f"resume with seed={state['seed']}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
