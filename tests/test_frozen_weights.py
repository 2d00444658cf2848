"""Checkpoints leave out the frozen weights and get them back, checked, from the base model."""

from __future__ import annotations

import hashlib

import pytest
import torch

from batchmix.core.errors import BatchmixError
from batchmix.models.frozen_weights import FROZEN
from scale_helpers import tiny_encoder


def blake2b_of(t: torch.Tensor) -> str:
    """An independent hash of the same bytes: dtype and shape, then the raw little-endian values."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def saved(module) -> dict:
    checkpoint = {"state_dict": {k: v.clone() for k, v in module.state_dict().items()}}
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def test_frozen_embeddings_are_left_out_and_put_back_equal():
    module = tiny_encoder(freeze_embeddings=True)
    full = module.state_dict()
    checkpoint = saved(module)
    frozen = {k for k in full if "word_embeddings" in k or ".pooler." in k}
    assert frozen and set(checkpoint[FROZEN]) == frozen  # both tower names of the shared encoder
    assert not frozen & set(checkpoint["state_dict"])
    assert all(checkpoint[FROZEN][k] == blake2b_of(full[k]) for k in frozen)
    kept = sum(v.numel() for v in checkpoint["state_dict"].values())
    assert kept < sum(v.numel() for k, v in full.items() if k.startswith("query_encoder.")) / 5  # the vocabulary dominates

    fresh = tiny_encoder(freeze_embeddings=True)  # same seed: the same base weights
    with torch.no_grad():  # "train" it: the trainable weights of the checkpoint must win
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.5)
    checkpoint = saved(module)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    for key, value in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_other_base_weights_are_refused_in_one_line():
    checkpoint = saved(tiny_encoder(freeze_embeddings=True))
    other = tiny_encoder(freeze_embeddings=True, seed=1)
    with pytest.raises(BatchmixError) as error:
        other.on_load_checkpoint(checkpoint)
    assert "was trained from other base weights" in str(error.value) and "\n" not in str(error.value)


def test_a_checkpoint_without_the_entry_loads_as_before():
    module = tiny_encoder(freeze_embeddings=True)
    checkpoint = {"state_dict": dict(module.state_dict())}
    tiny_encoder(freeze_embeddings=True).on_load_checkpoint(checkpoint)
    assert checkpoint["state_dict"].keys() == module.state_dict().keys()


@pytest.mark.parametrize("keep, multirun, exported, left", [
    ("auto", True, True, set()),                      # a sweep point with model/: no checkpoint
    ("auto", True, False, {"last.ckpt", "best.ckpt"}),  # ... without model/: its weights stay
    ("auto", False, True, {"last.ckpt", "best.ckpt"}),  # a single run keeps all
    ("last", True, True, {"last.ckpt"}),
    ("best", False, True, {"best.ckpt"}),
    ("none", False, False, set()),
])
def test_checkpoint_keep_drops_what_a_finished_run_does_not_keep(tmp_path, keep, multirun, exported, left):
    from batchmix.run.checkpointing import drop_checkpoints, resolve_keep
    from batchmix.run.preflight import check_keep

    for name in ("last.ckpt", "best.ckpt"):
        (tmp_path / name).write_bytes(b"x")
    drop_checkpoints(tmp_path, resolve_keep(check_keep(keep), multirun=multirun, exported=exported))
    assert {p.name for p in tmp_path.iterdir()} == left
    with pytest.raises(BatchmixError, match=r"checkpoint.keep='some' is not one of"):
        check_keep("some")
