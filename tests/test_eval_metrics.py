"""batchmix.eval.metrics against ranx and scikit-learn, and the pessimistic tie rule by hand."""

import math

import numpy as np
import pytest
import ranx
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, ndcg_score

from batchmix.eval.metrics import (
    metric_names,
    ap_at_k,
    average_precision,
    count_scoring_at_least,
    ndcg_at_k,
    per_query_metrics,
    reciprocal_rank,
    recall_at_k,
    relevant_ranks,
)

pytestmark = pytest.mark.filterwarnings("ignore:unsafe cast")

def _padded(rel_sets: list[list[int]]) -> torch.Tensor:
    width = max(1, max(len(r) for r in rel_sets))
    return torch.tensor([r + [-1] * (width - len(r)) for r in rel_sets], dtype=torch.long)


def _ranx_per_query(scores: np.ndarray, rel_sets: list[list[int]]) -> dict[str, np.ndarray]:
    qids = [f"q{i:04d}" for i in range(len(rel_sets))]
    qrels = ranx.Qrels({q: {f"d{j}": 1 for j in rel} for q, rel in zip(qids, rel_sets)})
    run = ranx.Run({q: {f"d{j}": float(s) for j, s in enumerate(row)} for q, row in zip(qids, scores)})
    ranx.evaluate(qrels, run, list(metric_names()), return_mean=False)  # same metric names as ours
    return {name: np.array([run.scores[name][q] for q in qids]) for name in metric_names()}


def _random_case(seed: int, n_queries: int = 40, n_candidates: int = 300, max_relevant: int = 12):
    """Tie-free float scores and relevance sets of varying size (1..max_relevant)."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(n_queries, n_candidates, generator=gen, dtype=torch.float64)
    rel_sets = []
    for q in range(n_queries):
        n_rel = int(torch.randint(1, max_relevant + 1, (1,), generator=gen))
        rel = torch.randperm(n_candidates, generator=gen)[:n_rel].tolist()
        # Make some queries easy so top-k metrics are not all zero.
        if q % 3 == 0:
            scores[q, rel] += 3.0
        rel_sets.append(rel)
    assert scores.unique().numel() == scores.numel()  # ranx's tie order is its own; avoid ties
    return scores, rel_sets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_metric_matches_ranx_on_tie_free_scores(seed):
    scores, rel_sets = _random_case(seed)
    ranks = relevant_ranks(scores, _padded(rel_sets))
    ours = per_query_metrics(ranks)
    theirs = _ranx_per_query(scores.numpy(), rel_sets)
    for name in metric_names():
        np.testing.assert_allclose(ours[name].numpy(), theirs[name], atol=1e-6, err_msg=name)
    # The easy third of the queries must actually exercise the top of the ranking.
    assert ours["recall@1"].max() > 0 and ours["ndcg@10"].mean() > 0.1


def test_ranks_are_positions_in_a_full_sort():
    scores, rel_sets = _random_case(3, n_queries=10, n_candidates=50)
    ranks = relevant_ranks(scores, _padded(rel_sets))
    for q, rel in enumerate(rel_sets):
        order = torch.argsort(scores[q], descending=True).tolist()
        assert ranks[q, : len(rel)].tolist() == [order.index(j) + 1 for j in rel]
        assert (ranks[q, len(rel) :] == 0).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_ap_matches_sklearn_and_ndcg_matches_sklearn(seed):
    scores, rel_sets = _random_case(seed, n_queries=25, n_candidates=120)
    ranks = relevant_ranks(scores, _padded(rel_sets))
    ap, ndcg = average_precision(ranks), ndcg_at_k(ranks, 10)
    for q, rel in enumerate(rel_sets):
        y_true = np.zeros(scores.shape[1])
        y_true[rel] = 1
        assert ap[q].item() == pytest.approx(average_precision_score(y_true, scores[q].numpy()), abs=1e-9)
        assert ndcg[q].item() == pytest.approx(ndcg_score([y_true], [scores[q].numpy()], k=10), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=2, max_size=25).flatmap(
        lambda s: st.tuples(st.just(s), st.sets(st.integers(0, len(s) - 1), min_size=1, max_size=len(s)))
    )
)
def test_ap_with_heavy_ties_equals_sklearn(case):
    """Pessimistic ties reproduce sklearn's threshold-grouped AP (LAReQA's official scorer) exactly."""
    int_scores, rel = case
    scores = torch.tensor([int_scores], dtype=torch.float64)
    ranks = relevant_ranks(scores, _padded([sorted(rel)]))
    y_true = np.zeros(len(int_scores))
    y_true[list(rel)] = 1
    expected = average_precision_score(y_true, np.array(int_scores, dtype=float))
    assert average_precision(ranks).item() == pytest.approx(expected, abs=1e-12)


def test_tie_rule_by_hand():
    # Candidates 1, 2, 3 tie at 0.5; pessimistic: each tied item sits at the end of its tie group.
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1]]).expand(2, -1)
    ranks = relevant_ranks(scores, torch.tensor([[2, -1], [1, 3]]))
    assert ranks.tolist() == [[4, 0], [4, 4]]
    # Query 0: one relevant at rank 4. Query 1: two relevant, both at rank 4.
    assert average_precision(ranks).tolist() == pytest.approx([1 / 4, (2 / 4 + 2 / 4) / 2])
    assert ap_at_k(ranks, 3).tolist() == [0.0, 0.0]
    assert reciprocal_rank(ranks).tolist() == pytest.approx([1 / 4, 1 / 4])
    assert recall_at_k(ranks, 3).tolist() == [0.0, 0.0]  # a tie across the cutoff is a miss
    assert recall_at_k(ranks, 4).tolist() == [1.0, 1.0]
    d4 = 1 / math.log2(5)
    assert ndcg_at_k(ranks, 10).tolist() == pytest.approx([d4, 2 * d4 / (1 + 1 / math.log2(3))])
    # Tied for first place with a non-relevant candidate: rank 2, not 1.
    top_tie = relevant_ranks(torch.tensor([[0.9, 0.9, 0.1]]), torch.tensor([[1]]))
    assert top_tie.tolist() == [[2]]


def _xtreme_r_ap_at_k(rel: set[int], ranked: list[int], k: int) -> float:
    """AP@k exactly as XTREME-R scores LAReQA (normalised by min(R, k))."""
    score, hits = 0.0, 0
    for i, item in enumerate(ranked[:k]):
        if item in rel:
            hits += 1
            score += hits / (i + 1)
    return score / min(len(rel), k)


def test_ap_at_k_normalises_by_min_relevant_and_k():
    scores, _ = _random_case(4, n_queries=6, n_candidates=200)
    gen = torch.Generator().manual_seed(5)
    rel_sets = [torch.randperm(200, generator=gen)[:n].tolist() for n in (1, 3, 19, 20, 21, 60)]
    for q, rel in enumerate(rel_sets):  # push relevant items up so the top 20 has many hits
        scores[q, rel[: len(rel) // 2]] += 4.0
    ranks = relevant_ranks(scores, _padded(rel_sets))
    ours = ap_at_k(ranks, 20)
    for q, rel in enumerate(rel_sets):
        ranked = torch.argsort(scores[q], descending=True).tolist()
        assert ours[q].item() == pytest.approx(_xtreme_r_ap_at_k(set(rel), ranked, 20), abs=1e-12)
    # With R > k everything in the top k relevant is a perfect 1 (ranx's R-normalised map@k is not).
    perfect = torch.arange(30, 0, -1, dtype=torch.float64).unsqueeze(0)
    assert ap_at_k(relevant_ranks(perfect, torch.arange(30).unsqueeze(0)), 20).item() == pytest.approx(1.0)


def test_rows_without_relevant_items_are_nan():
    ranks = torch.tensor([[0, 0], [3, 0]])
    for values in per_query_metrics(ranks).values():
        assert math.isnan(values[0].item()) and not math.isnan(values[1].item())


def test_chunked_counting_equals_one_shot():
    scores, rel_sets = _random_case(6, n_queries=33, n_candidates=97)
    relevant = _padded(rel_sets)
    assert torch.equal(relevant_ranks(scores, relevant, budget=1), relevant_ranks(scores, relevant, budget=1 << 30))
    thresholds = scores[:, :5]
    brute = torch.tensor([[int((row >= t).sum()) for t in ts] for row, ts in zip(scores, thresholds)])
    assert torch.equal(count_scoring_at_least(scores, thresholds, budget=7), brute)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="must be"):
        relevant_ranks(torch.zeros(3, 5), torch.zeros(2, 1, dtype=torch.long))
