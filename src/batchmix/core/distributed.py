"""Cross-device in-batch negatives: all-gather embeddings with gradients.

Under DDP each process embeds its slice of the global batch. Gathering every rank's query and
passage embeddings *with gradients* (the autograd all-gather of `torch.distributed`, whose backward
sums the gradient of every rank's copy back onto its owner) lets each query score the whole global
batch, as Tevatron and sentence-transformers' `gather_across_devices` do. Every rank then computes
the same global loss L; the all-gather backward gives rank r the sum over ranks of dL/d(emb_r),
i.e. world_size x dL/d(emb_r), and DDP's gradient averaging divides by world_size again, so the
parameters receive exactly the gradient of a single process on the concatenated batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from batchmix.core.errors import BatchmixError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather in forward; in backward, each rank's slice of the gradient summed over ranks.

    Hand-written with the public collectives: torch >= 2.13 deprecates the autograd all-gather of
    `torch.distributed.nn.functional` in favour of a private module (`_functional_collectives`).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.rows = x.shape[0]
        out = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(out, x)
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # reduced in place: not autograd's tensor
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's copy of every slice, summed
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` [b, ...] from every rank in rank order ([world*b, ...]); identity on one process.
    Every rank must pass the same shape (the hybrid sampler gives each rank an equal slice)."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x.contiguous())


def gather_tensor(x: Tensor) -> Tensor:
    """`x` [b, ...] of every rank in rank order, without gradients (ids, keys); identity on one process.
    Every rank must pass the same shape (the hybrid sampler gives each rank an equal slice)."""
    if world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def gather_padded(x: Tensor, pad: int) -> Tensor:
    """`x` [b, w] of every rank in rank order, each padded on the right with `pad` to the widest
    rank's w (rows of keys of different lengths, e.g. the ids a candidate answers); identity on one process."""
    if world_size() == 1:
        return x
    width = torch.tensor([x.shape[1]], device=x.device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    padded = torch.full((x.shape[0], int(width)), pad, dtype=x.dtype, device=x.device)
    padded[:, : x.shape[1]] = x
    return gather_tensor(padded)


def check_world_size(trainer: Mapping[str, Any], batch: int) -> None:
    """Under DDP data.batch_size (`batch`) is the global batch: it must split evenly over the
    processes of the `trainer` node."""
    devices, nodes = trainer["devices"], trainer.get("num_nodes", 1)  # num_nodes: only trainer=ddp sets it (Lightning's default: 1)
    if not (isinstance(devices, int) and isinstance(nodes, int)) or devices < 1 or nodes < 1:
        return  # "auto", -1, a device list: Lightning resolves them; the sampler checks again at setup
    world = devices * nodes
    if batch % world:
        raise BatchmixError(
            f"data.batch_size={batch} (the global batch) is not divisible by the {world} processes "
            f"(trainer.devices={devices} x trainer.num_nodes={nodes}); use a multiple of {world}"
        )
