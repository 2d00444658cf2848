"""Translation-aware negatives: a candidate that shares the query's parallel id is never a negative.

In a multilingual batch the answer of query `x` in another language is a *translation* of its own
positive; scoring it as a negative teaches the encoder to push translations apart, the opposite of
what a cross-lingual retriever needs. The hybrid sampler keeps one id per batch, but DDP gathering
(another rank's batch), hard negatives and user data with near-duplicate ids bring such candidates
back. So the in-batch losses mask them: with `keys[i]` the parallel id of row i, the logit of
(query i, candidate j) is dropped from the softmax when `keys[i] == keys[j]` and j is not i's own
positive.

Ids are turned into int64 keys by a stable hash (BLAKE2b, 8 bytes): the same on every process and
machine (Python's `hash` is salted per process), and cheap to all-gather with the embeddings.
`loss.mask_translations=false` turns the masking off, for comparison.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor


def parallel_id_keys(ids: Sequence[str], device: torch.device | str | None = None) -> Tensor:
    """int64 keys of parallel ids (equal ids, equal keys; a collision needs 2^32 distinct ids)."""
    keys = [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little", signed=True) for i in ids]
    return torch.tensor(keys, dtype=torch.long, device=device)


def translation_mask(query_keys: Tensor, candidate_keys: Tensor) -> Tensor:
    """Bool [B, C]: True where candidate j shares query i's parallel id and is not its positive (j = i)."""
    same = query_keys[:, None] == candidate_keys[None, :]
    own = torch.zeros_like(same)
    n = min(same.shape)
    own[torch.arange(n), torch.arange(n)] = True
    return same & ~own
