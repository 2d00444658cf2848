"""False negatives: a candidate that answers the query is never scored as its negative.

An in-batch loss scores query i against every candidate j of the (DDP-gathered) batch: the
positives of the other queries, then the hard negatives. Candidate j is a *false* negative of
query i when it answers i's question, in any language and under any id:

- a **translation** of i's own positive (another row of the same parallel id: DDP gathering, hard
  negatives, user data);
- **another question's identical answer sentence**: different questions often share one answer
  (on XQuAD-R 523 of the 947 training ids share theirs with another id). In a `mono` batch the
  false negative is the very sentence of i's positive, in a `cross` or `multi` batch its
  translation, so the defect acts differently on the batch types batchmix compares.

`loss.mask` chooses which of them leave the loss (the logit of (i, j) is dropped from the softmax,
and the entry from the similarity MSE), always keeping j = i, the query's own positive:

- `answers` (the default): every j whose *answer ids* include i's id. A candidate row's answer ids
  are the ids of every query it answers (data/corpus.py: the same text is the positive of those ids
  in its language, the data's `answers` field, the miner's `answers`), and a candidate whose tokens
  equal i's positive's (the same text, for data that names no answers) is dropped too;
- `ids` (what batchmix did before `answers` existed): only j sharing i's parallel id;
- `none`: nothing is dropped, for comparison.

Both masks are one operation on int64 keys, so they all-gather with the embeddings: query i has
keys Q_i (`ids`: its id; `answers`: its id and its positive's tokens), candidate j keys A_j
(`ids`: its id; `answers`: its answer ids and its tokens), and (i, j) is dropped when Q_i and A_j
share a key and j != i. Keys are a stable hash (BLAKE2b, 8 bytes): the same on every process and
machine (Python's `hash` is salted per process); rows have different numbers of answer ids, so
they are padded with a key that matches nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from batchmix.core.errors import BatchmixError

MASKS = ("answers", "ids", "none")
# Padding of a row's keys; the query side and the candidate side use different ones, so two pads never match.
QUERY_PAD = torch.iinfo(torch.int64).min
CANDIDATE_PAD = QUERY_PAD + 1


def check_mask(mask: object) -> str:
    if mask not in MASKS:
        raise BatchmixError(f"loss.mask={mask!r} is not one of {'|'.join(MASKS)}: answers (drop every candidate that "
                            f"answers the query), ids (only its parallel id's rows), none")
    return str(mask)


def _key(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def id_keys(ids: Sequence[str], device: torch.device | str | None = None) -> Tensor:
    """int64 keys [N] of ids (equal ids, equal keys; a collision needs ~2^32 distinct ids)."""
    return torch.tensor([_key(str(i).encode()) for i in ids], dtype=torch.long, device=device)


def token_keys(features: dict[str, Tensor]) -> Tensor:
    """int64 keys [N] of tokenised texts: equal token ids (the same text, prefix and truncation) give equal keys."""
    ids, lengths = features["input_ids"].cpu(), features["attention_mask"].sum(1).tolist()
    keys = [_key(b"tokens\0" + ids[i, :n].to(torch.int64).numpy().tobytes()) for i, n in enumerate(lengths)]
    return torch.tensor(keys, dtype=torch.long, device=features["input_ids"].device)


def key_rows(rows: Iterable[Sequence[str]], extra: Tensor | None = None, pad: int = CANDIDATE_PAD) -> Tensor:
    """int64 [N, W]: row n holds the keys of the ids in `rows[n]` (and `extra[n]`), padded with `pad`."""
    hashed = [[_key(str(i).encode()) for i in row] for row in rows]
    if extra is not None:
        hashed = [[*row, int(k)] for row, k in zip(hashed, extra.tolist())]
    width = max((len(row) for row in hashed), default=0) or 1
    out = torch.full((len(hashed), width), pad, dtype=torch.long)
    for n, row in enumerate(hashed):
        out[n, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(extra.device) if extra is not None else out


def mask_keys(batch: dict, mode: str) -> tuple[Tensor, list[Tensor]] | None:
    """The keys of one process's batch (before any DDP gathering): (query keys [B, Wq], [positive keys
    [B, Wp], hard-negative keys [M, Wn]] when it has hard negatives), or None (`none`, or a batch
    without `ids`). Under `ids` a query's key is its id and a candidate's the id it has (a hard
    negative without one: no key); under `answers` a query has its id and its positive's tokens, a
    candidate every id it answers (`answers`, `negative_answers`; without them its own id) and its
    tokens. All on the CPU."""
    if mode == "none" or "ids" not in batch:
        return None
    ids, negatives = batch["ids"], batch.get("negative_ids")
    if mode == "ids":
        query = id_keys(ids)[:, None]
        candidates = [query]
        if negatives is not None:
            candidates.append(key_rows([[i] if i is not None else [] for i in negatives]))
        return query, candidates
    positive_tokens = token_keys(batch["positive"]).cpu()
    query = torch.stack([id_keys(ids), positive_tokens], dim=1)
    candidates = [key_rows(batch.get("answers") or [[i] for i in ids], extra=positive_tokens)]
    if negatives is not None:
        answers = batch.get("negative_answers") or [[i] if i is not None else [] for i in negatives]
        candidates.append(key_rows(answers, extra=token_keys(batch["negative"]).cpu()))
    return query, candidates


def stack_rows(parts: Sequence[Tensor]) -> Tensor:
    """Key rows of different widths as one [sum N, max W] tensor, padded with CANDIDATE_PAD."""
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=CANDIDATE_PAD) for p in parts])


def shared_key_mask(query_keys: Tensor, candidate_keys: Tensor) -> Tensor:
    """Bool [B, C]: True where candidate j shares a key with query i and is not its positive (j = i).
    `query_keys` [B, Wq] or [B], `candidate_keys` [C, Wc] or [C]."""
    q = query_keys if query_keys.ndim == 2 else query_keys[:, None]
    c = candidate_keys if candidate_keys.ndim == 2 else candidate_keys[:, None]
    shared = (q[:, None, :, None] == c[None, :, None, :]).any(-1).any(-1)
    n = min(shared.shape)
    own = torch.zeros_like(shared)
    own[torch.arange(n), torch.arange(n)] = True
    return shared & ~own
