"""Hard negatives: which ones a query gets, and how they enter the losses.

Expected loss values are computed by hand (plain-Python log-sum-exp over the kept candidates), and
under GradCache and DDP against one process on the whole batch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp

from batchmix.data.corpus import Negative, Pair, TrainingGroups
from batchmix.data.datamodule import PairCollator
from batchmix.data.negatives import check_hard_negatives, check_negatives_options, pick_negatives
from batchmix.core.errors import BatchmixError
from batchmix.losses import InfoNCELoss, SimilarityMSELoss
from batchmix.losses.false_negatives import id_keys
from batchmix.models.loading import load_tokenizer
from batchmix.mixing.sampler import PairRef
from scale_helpers import assert_same_grads, ddp_worker, loss_and_grads, make_batch, tiny_encoder
from loss_options import loss_options

# --- which negatives ---------------------------------------------------------------------------

GROUPS = TrainingGroups(
    ids=["a", "b"],
    pairs=[
        {
            "de": Pair("de q", "de p", (Negative("de n1", "de"), Negative("en x", "en", "z"))),
            "en": Pair("en q", "en p", (Negative("en n1", "en"), Negative("en n2", "en"), Negative("de n1", "de"))),
        },
        {"en": Pair("en q b", "en p b", (Negative("fr n", "fr"),))},
    ],
)


def texts(negatives: list[Negative]) -> list[str]:
    return [n.text for n in negatives]


def test_negatives_of_the_positive_language_row_come_first_without_repeats():
    assert texts(pick_negatives(GROUPS, 0, "de", 9)) == ["de n1", "en x", "en n1", "en n2"]
    assert texts(pick_negatives(GROUPS, 0, "en", 9)) == ["en n1", "en n2", "de n1", "en x"]
    assert texts(pick_negatives(GROUPS, 0, "en", 2)) == ["en n1", "en n2"]


def test_negatives_lang_same_and_other_follow_the_positive_language():
    assert texts(pick_negatives(GROUPS, 0, "de", 9, "same")) == ["de n1"]
    assert texts(pick_negatives(GROUPS, 0, "de", 9, "other")) == ["en x", "en n1", "en n2"]
    assert texts(pick_negatives(GROUPS, 0, "en", 9, "same")) == ["en n1", "en n2", "en x"]
    assert texts(pick_negatives(GROUPS, 1, "en", 9, "same")) == []


def test_too_few_negatives_is_one_line_naming_the_pair():
    check_hard_negatives(GROUPS, 1, "any")
    with pytest.raises(BatchmixError, match=r"data.hard_negatives=2 \(data.negatives_lang=any\): 1 of 3 pairs have fewer, first id 'b' in 'en'"):
        check_hard_negatives(GROUPS, 2, "any")
    with pytest.raises(BatchmixError, match=r"2 of 3 pairs have fewer, first id 'a' in 'de'"):
        check_hard_negatives(GROUPS, 2, "same")
    for bad in (-1, 1.5, True):
        with pytest.raises(BatchmixError, match="data.hard_negatives="):
            check_negatives_options(bad, "any")
    with pytest.raises(BatchmixError, match=r"data.negatives_lang='mono' is not one of \['any', 'same', 'other'\]"):
        check_negatives_options(1, "mono")


def test_collator_puts_each_querys_negatives_after_it_in_order():
    tokenizer = load_tokenizer("embedded:xlmr-tokenizer")
    refs = [PairRef(0, "de", "en", "cross", 0, 0), PairRef(1, "en", "en", "cross", 0, 0)]
    batch = PairCollator(GROUPS, tokenizer, passage_prefix="passage: ", hard_negatives=1)(refs)
    assert batch["negative_ids"] == [None, None] and batch["negative_langs"] == ["en", "fr"]
    expected = tokenizer(["passage: en n1", "passage: fr n"], padding=True, return_tensors="pt")
    assert torch.equal(batch["negative"]["input_ids"], expected["input_ids"])
    refs = [PairRef(0, "en", "de", "cross", 0, 0), PairRef(0, "de", "en", "cross", 0, 0)]
    other = PairCollator(GROUPS, tokenizer, hard_negatives=1, negatives_lang="other")(refs)
    assert other["negative_ids"] == ["z", None] and other["negative_langs"] == ["en", "de"]
    assert "negative" not in PairCollator(GROUPS, tokenizer)(refs)
    with pytest.raises(BatchmixError, match="data.hard_negatives=2"):
        PairCollator(GROUPS, tokenizer, hard_negatives=2)


# --- the losses --------------------------------------------------------------------------------

# Two queries, their positives, and one hard negative each (2-D unit vectors, τ = 1).
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
P = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
N = torch.tensor([[0.96, 0.28], [0.0, 1.0]])
CANDIDATES = torch.cat([P, N])


def hand_infonce(keep: list[list[bool]]) -> float:
    """-1/B sum_i log(exp(s_ii) / sum_{j kept} exp(s_ij)) over all four candidates, plain Python."""
    total = 0.0
    for i, q in enumerate(Q.tolist()):
        s = [sum(a * b for a, b in zip(q, c)) for c in CANDIDATES.tolist()]
        total += -(s[i] - math.log(sum(math.exp(s[j]) for j in range(4) if keep[i][j])))
    return total / 2


def test_hard_negatives_join_the_infonce_denominator():
    out = InfoNCELoss(**loss_options("infonce", temperature=1.0))(Q, CANDIDATES, {}).loss
    assert float(out) == pytest.approx(hand_infonce([[True] * 4] * 2), abs=1e-6)
    in_batch_only = InfoNCELoss(**loss_options("infonce", temperature=1.0))(Q, P, {}).loss
    assert float(out) > float(in_batch_only) + 0.1  # the negatives made it harder


def test_a_hard_negative_that_translates_the_querys_answer_is_masked():
    """Query 1's id is 'b'; the second hard negative answers 'b' (a translation of its positive)."""
    keys = id_keys(["a", "b"])  # as under loss.mask=ids: a query's key is its id, a candidate's the id it answers
    batch = {"query_keys": keys, "candidate_keys": torch.cat([keys, id_keys(["x", "b"])])}
    out = InfoNCELoss(**loss_options("infonce", temperature=1.0))(Q, CANDIDATES, batch).loss
    assert float(out) == pytest.approx(hand_infonce([[True] * 4, [True, True, True, False]]), abs=1e-6)
    unmasked = InfoNCELoss(**loss_options("infonce", temperature=1.0, mask="none"))(Q, CANDIDATES, batch).loss
    assert float(unmasked) == pytest.approx(hand_infonce([[True] * 4] * 2), abs=1e-6)


def test_similarity_mse_targets_hard_negatives_with_zero_and_drops_masked_entries():
    keys = id_keys(["a", "b"])  # as under loss.mask=ids: a query's key is its id, a candidate's the id it answers
    batch = {"query_keys": keys, "candidate_keys": torch.cat([keys, id_keys(["x", "b"])])}
    s = (Q @ CANDIDATES.T).tolist()
    errors = [(s[i][j] - (1.0 if i == j else 0.0)) ** 2 for i in range(2) for j in range(4) if (i, j) != (1, 3)]
    out = SimilarityMSELoss(**loss_options("mse"))(Q, CANDIDATES, batch)
    assert float(out.loss) == pytest.approx(sum(errors) / 7, abs=1e-6)
    in_batch = [(s[i][j] - (1.0 if i == j else 0.0)) ** 2 for i in range(2) for j in range(2)]
    assert float(out.logs["mse"]) == pytest.approx(sum(in_batch) / 4, abs=1e-6)  # the logged metric: B x B


def test_symmetric_infonce_scores_passages_against_queries_only():
    out = InfoNCELoss(**loss_options("infonce", temperature=1.0, symmetric=True))(Q, CANDIDATES, {}).loss
    s = (P @ Q.T).tolist()
    backward = sum(-(s[i][i] - math.log(sum(math.exp(v) for v in s[i]))) for i in range(2)) / 2
    assert float(out) == pytest.approx((hand_infonce([[True] * 4] * 2) + backward) / 2, abs=1e-6)


def test_training_step_with_hard_negatives_and_gradcache_agrees():
    ids = ["a", "b", "c", "d"]
    negative_ids = [None, "c", None, None, "x", None, None, "a"]  # row 1 answers c, row 7 answers a: masked
    module = tiny_encoder()
    batch = make_batch(module, 4, ids=ids, negatives=2, negative_ids=negative_ids)
    loss, grads = loss_and_grads(module, batch)
    without, _ = loss_and_grads(tiny_encoder(), make_batch(module, 4, ids=ids))
    assert loss != pytest.approx(without, abs=1e-4)
    unmasked, _ = loss_and_grads(tiny_encoder(loss={"mask": "none"}), batch)
    assert unmasked != pytest.approx(loss, abs=1e-5)
    cached_loss, cached_grads = loss_and_grads(tiny_encoder(loss={"cache_chunk": 3}), batch)
    assert cached_loss == pytest.approx(loss, abs=1e-5)
    assert_same_grads(cached_grads, grads, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_ddp_gathers_hard_negatives_as_one_process_on_the_global_batch(tmp_path):
    """2 gloo ranks x 4 queries x 2 negatives, under GradCache (chunks of 3; plain vs GradCache is
    checked above); rank 1's last negative answers rank 0's first query (id0), which only gathering
    reveals: the loss equals one process's on the global batch, masked."""
    cache_chunk = 3
    ids = [f"id{i}" for i in range(8)]
    negative_ids = [None] * 15 + ["id0"]
    out = tmp_path / "out"
    out.mkdir()
    loss_cfg = {"gather": True, "cache_chunk": cache_chunk}
    mp.start_processes(ddp_worker, args=(2, str(tmp_path / "init"), str(out), 8, loss_cfg, ids, 2, negative_ids),
                       nprocs=2, start_method="spawn")
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(2)]
    module = tiny_encoder()
    single, single_grads = loss_and_grads(module, make_batch(module, 8, ids=ids, negatives=2, negative_ids=negative_ids))
    unmasked, _ = loss_and_grads(tiny_encoder(loss={"mask": "none"}),
                                 make_batch(module, 8, ids=ids, negatives=2, negative_ids=negative_ids))
    assert single != pytest.approx(unmasked, abs=1e-6)
    for r in ranks:
        assert r["loss"] == pytest.approx(single, rel=1e-5)
    # DDP averages the ranks' gradients, each of the global loss: the single-process gradient.
    for name, grad in single_grads.items():
        torch.testing.assert_close(ranks[0]["grads"][name], grad, rtol=1e-3, atol=1e-6)
