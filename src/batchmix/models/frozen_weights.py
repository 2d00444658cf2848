"""Checkpoints without the weights training never changes.

A me5-small run freezes its 96M-parameter word embeddings (`model.freeze_embeddings`), and a
distillation run holds a frozen teacher: copied into every checkpoint they were most of its 614 MB,
and a sweep wrote them once per point. A checkpoint now stores only what can change. Each frozen
parameter is left out of `state_dict` and listed under `FROZEN` with a content hash (BLAKE2b of its
bytes); loading rebuilds the module from the same base model, checks each hash against the freshly
built weights, and puts them back, so the state dict Lightning (or `load_run`) loads is complete
and equal to the one saved. A checkpoint whose base weights differ (another model, another
revision of it) is refused with one line instead of loading silently wrong numbers.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from batchmix.core.errors import BatchmixError

# The checkpoint entry: {state-dict key: content hash} of the parameters not stored.
FROZEN = "batchmix_frozen"


def frozen_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """State-dict key -> tensor of every parameter that does not train (a tied or shared one under
    each of its names, as `state_dict` lists it)."""
    return {name: p for name, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}


def content_hash(tensor: torch.Tensor) -> str:
    """BLAKE2b of the tensor's dtype, shape and bytes (on the CPU)."""
    t = tensor.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def strip_frozen(checkpoint: dict[str, Any], module: nn.Module, hashes: dict[str, str] | None = None) -> dict[str, str]:
    """Drop the frozen parameters from `checkpoint["state_dict"]` and record their hashes under
    `FROZEN` (`hashes`: already computed ones, reused: frozen weights never change). Returns the hashes."""
    frozen = frozen_parameters(module)
    state = checkpoint["state_dict"]
    hashes = dict(hashes or {})
    for key, tensor in frozen.items():
        if key in state:
            if key not in hashes:
                hashes[key] = content_hash(tensor)
            del state[key]
    checkpoint[FROZEN] = {k: hashes[k] for k in frozen if k in hashes}
    return hashes


def restore_frozen(checkpoint: dict[str, Any], module: nn.Module, source: str = "the checkpoint") -> None:
    """Put back into `checkpoint["state_dict"]` the frozen parameters it left out, from `module`'s
    own (freshly built) weights, after checking their hashes; keys `module` lacks are skipped (e.g. a
    distillation teacher when only the encoder is loaded). A checkpoint without `FROZEN` is complete."""
    recorded = checkpoint.get(FROZEN)
    if not recorded:
        return
    own = dict(module.named_parameters(remove_duplicate=False))
    state = checkpoint["state_dict"]
    for key, expected in recorded.items():
        if key not in own:
            continue
        if content_hash(own[key]) != expected:
            raise BatchmixError(
                f"{source} was trained from other base weights than the model built now ({key} differs); "
                f"load it with the model.name_or_path (and revision) it was trained from"
            )
        state[key] = own[key].detach().clone()
