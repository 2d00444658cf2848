"""False negatives (losses/false_negatives.py): a candidate that answers the query is never its
negative: under `loss.mask=ids` a row of its parallel id, under `answers` (the default) also another
question's identical answer sentence and its translations.

Expected values are computed by hand from the InfoNCE formula (log-sum-exp over the kept
candidates), with the kept candidates read off the data's texts here, not from batchmix's index;
under DDP against one process on the global batch.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.multiprocessing as mp

from batchmix.losses import InfoNCELoss
from batchmix.losses.false_negatives import id_keys, shared_key_mask
from scale_helpers import assert_same_grads, ddp_batch_worker, ddp_worker, loss_and_grads, make_batch, tiny_encoder
from loss_options import loss_options

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
    assert id_keys(["q-17", "q-17", "x"]).tolist()[:2] == [expected, expected]
    assert id_keys(["q-17", "x"]).tolist()[1] != expected


def test_mask_drops_the_translation_but_never_the_positive():
    keys = id_keys(IDS)
    assert shared_key_mask(keys, keys).tolist() == [[False, False, True], [False, False, False], [True, False, False]]


@pytest.mark.parametrize("mask", ["ids", "none"])
def test_infonce_with_a_translation_in_the_batch_equals_the_hand_computed_loss(mask):
    loss = InfoNCELoss(**loss_options("infonce", temperature=1.0, mask=mask))
    keys = id_keys(IDS)
    out = loss(Q, P, {"query_keys": keys, "candidate_keys": keys}).loss
    mask = mask == "ids"
    keep = [[not (mask and IDS[i] == IDS[j] and i != j) for j in range(3)] for i in range(3)]
    assert float(out) == pytest.approx(hand_infonce(keep), abs=1e-6)
    if mask:  # the control: masking changed the loss
        assert float(out) != pytest.approx(hand_infonce([[True] * 3] * 3), abs=1e-4)


def test_a_batch_without_ids_is_the_plain_loss():
    out = InfoNCELoss(**loss_options("infonce", temperature=1.0))(Q, P, {}).loss
    assert float(out) == pytest.approx(hand_infonce([[True] * 3] * 3), abs=1e-6)


def test_training_step_masks_translations_and_gradcache_agrees():
    ids = ["a", "b", "c", "a", "d", "e"]
    plain = tiny_encoder()
    batch = make_batch(plain, 6, ids=ids)
    masked_loss, masked_grads = loss_and_grads(plain, batch)
    unmasked_loss, _ = loss_and_grads(tiny_encoder(loss={"mask": "none"}), batch)
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


# --- real XQuAD-R rows that share an answer sentence --------------------------------------------
LANGS = ["de", "en", "es"]
TAU = 0.05


@pytest.fixture(scope="module")
def sharing(xquad_root):
    """The training groups of the repo's split, two ids (x, y) whose answer sentence is one sentence
    in every loaded language, and two ids whose answers nobody else has. Found by comparing the
    texts here, not through batchmix's answers index."""
    from batchmix.data.lareqa import load_lareqa
    from batchmix.data.split import split_by_article

    corpus = load_lareqa(xquad_root, LANGS)
    groups = split_by_article(corpus, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)["train"].training_groups()
    by_answer: dict[tuple[str, ...], list[int]] = {}
    for g in range(len(groups)):
        by_answer.setdefault(tuple(groups.pairs[g][lang].positive for lang in LANGS), []).append(g)
    x, y = next(gs for gs in by_answer.values() if len(gs) >= 2)[:2]
    alone = {gs[0] for gs in by_answer.values() if len(gs) == 1}
    positives = {g: {groups.pairs[g][lang].positive for lang in LANGS} for g in range(len(groups))}
    # Two ids whose answers are no other id's in any language (a stricter test than the tuple above).
    a, b = [g for g in sorted(alone) if sum(positives[g] & positives[h] != set() for h in positives) == 1][:2]
    return groups, x, y, a, b


def real_batch(module, groups, refs: list[tuple[int, str, str]], batch_type: str) -> dict:
    from batchmix.data.datamodule import PairCollator
    from batchmix.mixing.sampler import PairRef

    collate = PairCollator(groups, module.tokenizer, query_prefix=module.query_prefix, passage_prefix=module.passage_prefix,
                           query_max_length=module.query_max_length, passage_max_length=module.passage_max_length)
    return collate([PairRef(g, q, p, batch_type) for g, q, p in refs])


def hand_loss(module, batch, dropped: set[tuple[int, int]]) -> float:
    """InfoNCE in plain Python on the model's embeddings, leaving out the `dropped` (query, candidate) entries."""
    with torch.no_grad():
        q = module.encode(batch["query"], "query").tolist()
        p = module.encode(batch["positive"], "passage").tolist()
    total = 0.0
    for i, qi in enumerate(q):
        s = [sum(a * b for a, b in zip(qi, pj)) / TAU for pj in p]
        total += -(s[i] - math.log(sum(math.exp(s[j]) for j in range(len(p)) if (i, j) not in dropped)))
    return total / len(q)


def batches(sharing) -> dict[str, tuple[list[tuple[int, str, str]], set[tuple[int, int]]]]:
    """(rows, the entries that answer their query) of a mono and a cross batch; x at row 0, y at row 2,
    so that under 2 DDP ranks each rank holds one of them."""
    _, x, y, a, b = sharing
    return {
        # mono: y's positive is the very sentence of x's positive, and the other way round
        "mono": ([(x, "en", "en"), (a, "en", "en"), (y, "en", "en"), (b, "en", "en")], {(0, 2), (2, 0)}),
        # cross: y's positive (es) is the Spanish translation of x's answer; x's (de) is y's German answer
        "cross": ([(x, "en", "de"), (a, "de", "en"), (y, "de", "es"), (b, "es", "de")], {(0, 2), (2, 0)}),
    }


@pytest.mark.parametrize("batch_type", ["mono", "cross"])
def test_a_shared_answer_is_masked_under_answers_and_not_under_ids(sharing, batch_type):
    groups = sharing[0]
    rows, dropped = batches(sharing)[batch_type]
    module = tiny_encoder()
    batch = real_batch(module, groups, rows, batch_type)
    texts = [groups.pairs[g][p].positive for g, _, p in rows]
    if batch_type == "mono":
        assert texts[0] == texts[2]  # the identical sentence
    else:
        assert texts[0] != texts[2]  # its translation
    expected = hand_loss(module, batch, dropped)
    unmasked = hand_loss(module, batch, set())
    assert expected != pytest.approx(unmasked, abs=1e-4)  # the shared answer matters to the loss
    loss, grads = loss_and_grads(module, batch)
    assert loss == pytest.approx(expected, abs=1e-5)
    assert module.history[-1]["masked"] == len(dropped)
    cached_loss, cached_grads = loss_and_grads(tiny_encoder(loss={"cache_chunk": 2}), batch)
    assert cached_loss == pytest.approx(expected, abs=1e-5)
    assert_same_grads(cached_grads, grads, rtol=1e-4, atol=1e-6)
    by_id = tiny_encoder(loss={"mask": "ids"})
    ids_loss, _ = loss_and_grads(by_id, batch)
    assert ids_loss == pytest.approx(unmasked, abs=1e-5)  # ids differ: today's mask keeps the false negative
    assert by_id.history[-1]["masked"] == 0


def test_without_answers_an_identical_positive_text_is_still_masked(sharing):
    """Data that names no answers: the mask falls back to equal tokens (the same text)."""
    groups = sharing[0]
    rows, dropped = batches(sharing)["mono"]
    module = tiny_encoder()
    batch = {k: v for k, v in real_batch(module, groups, rows, "mono").items() if k != "answers"}
    loss, _ = loss_and_grads(module, batch)
    assert loss == pytest.approx(hand_loss(module, batch, dropped), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("batch_type", ["mono", "cross"])
def test_ddp_masks_a_shared_answer_held_by_the_other_rank(tmp_path, sharing, batch_type):
    """x (rank 0) and y (rank 1): only the gathered answer keys tell either rank about the other's row."""
    rows, dropped = batches(sharing)[batch_type]
    module = tiny_encoder()
    batch = real_batch(module, sharing[0], rows, batch_type)
    torch.save(batch, tmp_path / "batch.pt")
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(ddp_batch_worker, args=(2, str(tmp_path / "init"), str(out), str(tmp_path / "batch.pt"), {"gather": True}),
                       nprocs=2, start_method="spawn")
    expected = hand_loss(module, batch, dropped)
    single, single_grads = loss_and_grads(module, batch)
    for r in (torch.load(out / f"rank{r}.pt") for r in range(2)):
        assert r["loss"] == pytest.approx(expected, abs=1e-5)
        assert_same_grads(r["grads"], single_grads, rtol=1e-4, atol=1e-6)


def test_the_answers_index_is_each_languages_answer_texts_grouped(sharing):
    """What a positive answers, and which ids the sampler keeps apart, recomputed from the texts."""
    groups = sharing[0]
    for lang in LANGS:
        by_text: dict[str, set[str]] = {}
        for qid, pairs in zip(groups.ids, groups.pairs):
            by_text.setdefault(pairs[lang].positive, set()).add(qid)
        for g, pairs in enumerate(groups.pairs):
            assert groups.positive_answers(g, lang) == by_text[pairs[lang].positive]
    texts = [{lang: pairs[lang].positive for lang in LANGS} for pairs in groups.pairs]
    for g in range(len(groups)):
        others = {h for h in range(len(groups)) for lang in LANGS if texts[h][lang] == texts[g][lang]} - {g}
        assert groups.shared_answers[g] == others
