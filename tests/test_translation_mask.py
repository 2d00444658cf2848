"""Translation-aware masking: a candidate sharing the query's parallel id is never a negative.

Expected values are computed by hand from the InfoNCE formula (log-sum-exp over the kept
candidates), and under DDP against one process on the global batch.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.multiprocessing as mp

from batchmix.losses import InfoNCELoss
from batchmix.losses.translation_mask import parallel_id_keys, translation_mask
from scale_helpers import assert_same_grads, ddp_worker, loss_and_grads, make_batch, tiny_encoder

# Three unit vectors in 2-D; rows 0 and 2 share the id "a": row 2's pair is a translation of row 0's.
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
P = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
IDS = ["a", "b", "a"]


def hand_infonce(keep: list[list[bool]], tau: float = 1.0) -> float:
    """-1/B sum_i log(exp(s_ii) / sum_{j kept} exp(s_ij)), with s_ij = q_i . p_j / tau in plain Python."""
    rows = Q.tolist()
    cols = P.tolist()
    total = 0.0
    for i, q in enumerate(rows):
        s = [sum(a * b for a, b in zip(q, p)) / tau for p in cols]
        total += -(s[i] - math.log(sum(math.exp(s[j]) for j in range(len(cols)) if keep[i][j])))
    return total / len(rows)


def test_keys_are_a_stable_hash_of_the_ids():
    expected = int.from_bytes(hashlib.blake2b(b"q-17", digest_size=8).digest(), "little", signed=True)
    assert parallel_id_keys(["q-17", "q-17", "x"]).tolist()[:2] == [expected, expected]
    assert parallel_id_keys(["q-17", "x"]).tolist()[1] != expected


def test_mask_drops_the_translation_but_never_the_positive():
    keys = parallel_id_keys(IDS)
    assert translation_mask(keys, keys).tolist() == [[False, False, True], [False, False, False], [True, False, False]]


@pytest.mark.parametrize("mask", [True, False])
def test_infonce_with_a_translation_in_the_batch_equals_the_hand_computed_loss(mask):
    loss = InfoNCELoss(temperature=1.0, mask_translations=mask)
    out = loss(Q, P, {"parallel_keys": parallel_id_keys(IDS)}).loss
    keep = [[not (mask and IDS[i] == IDS[j] and i != j) for j in range(3)] for i in range(3)]
    assert float(out) == pytest.approx(hand_infonce(keep), abs=1e-6)
    if mask:  # the control: masking changed the loss
        assert float(out) != pytest.approx(hand_infonce([[True] * 3] * 3), abs=1e-4)


def test_a_batch_without_ids_is_the_plain_loss():
    out = InfoNCELoss(temperature=1.0)(Q, P, {}).loss
    assert float(out) == pytest.approx(hand_infonce([[True] * 3] * 3), abs=1e-6)


def test_training_step_masks_translations_and_gradcache_agrees():
    ids = ["a", "b", "c", "a", "d", "e"]
    plain = tiny_encoder()
    batch = make_batch(plain, 6, ids=ids)
    masked_loss, masked_grads = loss_and_grads(plain, batch)
    unmasked_loss, _ = loss_and_grads(tiny_encoder(loss={"mask_translations": False}), batch)
    assert masked_loss != pytest.approx(unmasked_loss, abs=1e-5)
    no_ids = {k: v for k, v in batch.items() if k != "ids"}
    assert loss_and_grads(tiny_encoder(), no_ids)[0] == pytest.approx(unmasked_loss, abs=1e-6)
    cached_loss, cached_grads = loss_and_grads(tiny_encoder(loss={"cache_chunk": 2}), batch)
    assert cached_loss == pytest.approx(masked_loss, abs=1e-5)
    assert_same_grads(cached_grads, masked_grads, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_ddp_masks_a_translation_held_by_the_other_rank(tmp_path):
    """Rows 1 (rank 0) and 5 (rank 1) share an id: only after gathering does either rank see the other's
    row, so the masked DDP loss equals one process's masked loss on the global batch, not the unmasked one."""
    ids = [f"id{i}" for i in range(8)]
    ids[5] = ids[1]
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(ddp_worker, args=(2, str(tmp_path / "init"), str(out), 8, {"gather": True}, ids), nprocs=2, start_method="spawn")
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(2)]
    module = tiny_encoder()
    single, _ = loss_and_grads(module, make_batch(module, 8, ids=ids))
    unmasked, _ = loss_and_grads(module, make_batch(module, 8))
    assert single != pytest.approx(unmasked, abs=1e-5)
    for r in ranks:
        assert r["loss"] == pytest.approx(single, rel=1e-5)
