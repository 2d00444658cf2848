"""Cross-device in-batch negatives: all-gather embeddings with gradients.

Under DDP each process embeds its slice of the global batch. Gathering every rank's query and
passage embeddings *with gradients* (`torch.distributed.nn.functional.all_gather`, whose backward
sums the gradient of every rank's copy back onto its owner) lets each query score the whole global
batch, as Tevatron and sentence-transformers' `gather_across_devices` do. Every rank then computes
the same global loss L; the all-gather backward gives rank r the sum over ranks of dL/d(emb_r),
i.e. world_size x dL/d(emb_r), and DDP's gradient averaging divides by world_size again, so the
parameters receive exactly the gradient of a single process on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` [b, ...] from every rank in rank order ([world*b, ...]); identity on one process."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)
