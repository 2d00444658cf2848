"""What every batchmix loss is: `BatchLoss`, and the `LossOutput` it returns.

One interface, so `DualEncoder` and GradCache never ask which loss trains:

    out = loss(q, p, batch)        # q: the batch's L2-normalised query embeddings [B, D]
                                   # p: its candidates [B + M, D]: row i < B is query i's positive,
                                   #    rows B.. the batch's M hard negatives (data.hard_negatives)
    out.loss                       # the scalar to back-propagate
    out.logs                       # the parts logged every step: {"mse": ...} and whatever the loss adds

A loss is built from its config (`conf/loss/<name>.yaml`, `_target_` = the class) by
`hydra.utils.instantiate` with ALL of that config as keyword arguments, and checks its options when
built; building one is cheap (no weights load), so the checks run in the pre-flight. The options
every loss shares:

- `temperature`, `learn_temperature`: the scale τ of the similarities; the loss owns it (a buffer, or
  a learned parameter `log_temperature`), and `train/temperature` is logged whatever loss trains.
- `gather`: under DDP all-gather the embeddings so the global batch is the negative pool.
- `cache_chunk`: GradCache chunk size (losses/grad_cache.py), or null.
- `mask`: which false negatives an in-batch loss leaves out (losses/false_negatives.py;
  `candidate_mask`): `answers` (every candidate that answers the query, in any language, under any
  id), `ids` (only rows of its parallel id) or `none`. How many entries it left out is logged every
  step as `masked` (train/<batch type>/masked).

A loss wraps the model it trains (as sentence-transformers' losses do): `loss.step(model, batch)`
embeds one training batch with the model's `encode` (`EncodingModel`: all it needs) and returns the
`LossOutput`, plainly or, with `cache_chunk`, through GradCache (losses/grad_cache.py); it adds the
false-negative mask keys to the batch first. So the models never import the losses.

A loss that scores every query against every positive of the batch is *in-batch* (`in_batch = True`):
its embeddings are gathered under DDP and it works with GradCache. A per-example loss sets
`in_batch = False` (it has no negatives: `data.hard_negatives` is refused with it). A loss that needs
the model (e.g. a teacher built from the student) gets it in `bind(model)`, called once by `DualEncoder`; a loss that needs more texts in the batch names them
through `pivot_lang` (the collator adds `pivot_query` / `pivot_positive`).

The in-batch similarity MSE (losses/similarity_mse.py) is logged for every batch type whatever loss
trains, because its convergence per batch type is what batchmix studies: `BatchLoss.forward` adds it
to `logs`, on the same embeddings the loss saw. Subclasses implement `compute`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from batchmix.core.distributed import gather_padded, gather_with_grad
from batchmix.core.errors import BatchmixError
from batchmix.losses.false_negatives import CANDIDATE_PAD, QUERY_PAD, check_mask, mask_keys, shared_key_mask, stack_rows
from batchmix.losses.grad_cache import grad_cached_loss
from batchmix.core.options import positive_number, switch


def check_pair_shapes(q: Tensor, p: Tensor) -> None:
    """Raise unless q is B×D and p is C×D with C >= B (row i < B of p pairs with row i of q; the rest
    are hard negatives)."""
    if q.ndim != 2 or p.ndim != 2 or q.shape[1] != p.shape[1] or p.shape[0] < q.shape[0]:
        raise ValueError(
            f"expected query embeddings [B, D] and candidates [B + M, D], got {tuple(q.shape)} and {tuple(p.shape)}"
        )


def at_least_float32(x: Tensor) -> Tensor:
    """Upcast half/bfloat16 to float32 (float64 stays float64) before similarities and softmax."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def similarity_mse(q: Tensor, p: Tensor, masked: Tensor | None = None) -> Tensor:
    """Mean over the B×C matrix of (q @ p.T - I)² (I: 1 at (i, i), 0 elsewhere, hard-negative columns
    included), leaving out `masked` entries, as a scalar (at least float32): the formula and why in
    losses/similarity_mse.py. Keeps the autograd graph (the `mse` loss uses it); detach the result to
    log it as a metric."""
    check_pair_shapes(q, p)
    similarities = at_least_float32(q) @ at_least_float32(p).T
    target = torch.eye(*similarities.shape, dtype=similarities.dtype, device=similarities.device)
    errors = (similarities - target).square()
    return errors.mean() if masked is None else errors[~masked].mean()


class EncodingModel(Protocol):
    """What a loss needs from the model it trains (batchmix.models.dual_encoder.DualEncoder is one)."""

    device: torch.device

    def encode(self, features: dict[str, Tensor], tower: str = "query") -> Tensor: ...

    def parameters(self) -> Any: ...


class LossOutput(NamedTuple):
    loss: Tensor
    logs: dict[str, Tensor]  # detached scalars, logged as train/<name> and train/<batch type>/<name>


MASK = "candidate_mask"  # the batch key `forward` hands `compute` the mask under


class BatchLoss(nn.Module):
    """Base class of the batch losses; see the module docstring."""

    in_batch: ClassVar[bool] = True
    pivot_lang: str | None = None

    def __init__(self, *, temperature: float, learn_temperature: bool, gather: bool, cache_chunk: int | None, mask: str) -> None:
        """The options every loss shares, without defaults: their values are in conf/loss/*.yaml."""
        super().__init__()
        self.mask = check_mask(mask)
        positive_number("loss.temperature", temperature, "0.05")
        self.gather = switch("loss.gather", gather)
        if cache_chunk is not None and (isinstance(cache_chunk, bool) or not isinstance(cache_chunk, int) or cache_chunk < 1):
            raise BatchmixError(f"loss.cache_chunk={cache_chunk!r} must be null or a positive integer (e.g. 32)")
        self.cache_chunk = cache_chunk
        if self.cache_chunk is not None and not self.in_batch:
            # GradCache splits an in-batch loss's batch; a per-example loss has nothing to cache across.
            raise BatchmixError(f"loss.cache_chunk works with the in-batch losses, not {type(self).__name__}; set loss.cache_chunk=null")
        log_t = torch.tensor(math.log(temperature), dtype=torch.float32)
        if switch("loss.learn_temperature", learn_temperature):
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.exp()

    def bind(self, model: nn.Module) -> None:
        """Called once by the model that trains with this loss; the default needs nothing from it."""

    @property
    def gathers(self) -> bool:
        """Whether the embeddings are all-gathered across DDP ranks (an in-batch loss with `gather`)."""
        return self.in_batch and self.gather

    def step(self, model: EncodingModel, batch: dict[str, Any]) -> LossOutput:
        """The loss of one training batch, embedded by `model`: through GradCache with `cache_chunk`."""
        batch = self.with_mask_keys(batch, model.device)
        if self.cache_chunk is not None:
            return LossOutput(*grad_cached_loss(self, model, batch, self.cache_chunk))
        q = self.gathered(model.encode(batch["query"], "query"))  # under DDP: the global batch's negatives
        n = model.encode(batch["negative"], "passage") if "negative" in batch else None
        return self(q, self.candidates(model.encode(batch["positive"], "passage"), n), batch)

    def gathered(self, x: Tensor) -> Tensor:
        """Every rank's embeddings, with gradients, under DDP when `gathers`; else `x`."""
        return gather_with_grad(x) if self.gathers else x

    def candidates(self, positives: Tensor, negatives: Tensor | None) -> Tensor:
        """What each query is scored against: the (gathered) positives, then the (gathered) hard
        negatives, in the order of `with_mask_keys`."""
        p = self.gathered(positives)
        return p if negatives is None else torch.cat([p, self.gathered(negatives)])

    def with_mask_keys(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """The batch plus the keys the false-negative mask compares (`false_negatives.mask_keys`):
        `query_keys` [B, Wq] and `candidate_keys` [B + M, Wc] (the positives, then the hard negatives),
        all-gathered like the embeddings under DDP. A batch without `ids`, `mask=none` or a
        per-example loss (no candidates to mask): the batch as it is."""
        keys = mask_keys(batch, self.mask) if self.in_batch else None
        if keys is None:
            return batch

        def rows(x: Tensor, pad: int) -> Tensor:
            x = x.to(device)
            return gather_padded(x, pad) if self.gathers else x

        query, candidates = keys
        return {**batch, "query_keys": rows(query, QUERY_PAD), "candidate_keys": stack_rows([rows(c, CANDIDATE_PAD) for c in candidates])}

    def candidate_mask(self, batch: dict[str, Any]) -> Tensor | None:
        """Bool [B, C]: the (query, candidate) pairs an in-batch loss leaves out, from the batch's
        `query_keys` and `candidate_keys` (`with_mask_keys`, for `self.mask`); None
        under `mask=none` or when the batch has no keys."""
        if MASK in batch:
            return batch[MASK]
        if self.mask == "none" or "query_keys" not in batch:
            return None
        return shared_key_mask(batch["query_keys"], batch["candidate_keys"])

    def forward(self, q: Tensor, p: Tensor, batch: dict[str, Any] | None = None) -> LossOutput:
        batch = dict(batch or {})
        masked = batch[MASK] = self.candidate_mask(batch)  # computed once, for the loss and the count
        out = self.compute(q, p, batch)
        loss, logs = out if isinstance(out, LossOutput) else (out, {})
        # The logged metric stays the B×B in-batch matrix, so runs with and without hard negatives compare.
        mse = similarity_mse(q.detach().float(), p[: q.shape[0]].detach().float())
        # How many (query, candidate) entries the mask left out: the batch's false negatives.
        count = torch.zeros((), device=q.device) if masked is None else masked.sum().float()
        return LossOutput(loss, {"mse": mse, "masked": count, **logs})

    def compute(self, q: Tensor, p: Tensor, batch: dict[str, Any]) -> Tensor | LossOutput:
        """The loss of one batch (a scalar, at least float32), or a `LossOutput` with extra logs."""
        raise NotImplementedError
