"""Ranking metrics computed from the ranks of the relevant items, batched over queries.

Why by hand: ranx / trec_eval / scikit-learn take one explicit run (a sorted list or a dense
label vector) per query. LAReQA's multilingual pool is ~13k questions x ~13k candidates, and
batchmix needs 121 settings from one score pass, so materialising runs per query would cost
minutes; all that any of these metrics needs is the rank of each relevant item, which one
vectorised comparison gives. The tests check every function against ranx and scikit-learn.

Conventions (shared by every function here):

- `scores: FloatTensor[Q, N]` - similarity of query q to candidate n (higher = better).
- `relevant: LongTensor[Q, R]` - indices into the N candidates of each query's relevant items
  (binary relevance, distinct per row), right-padded with -1.
- `ranks: LongTensor[Q, R]` - the 1-based rank of each relevant item in the full ranking of the
  N candidates; padding entries are 0.

Tie policy - pessimistic: an item's rank is the number of candidates scoring >= its score
(itself included), i.e. every candidate tied with it is placed above it, relevant or not. With
that rule, "relevant items at rank <= r" is "relevant items scoring >= s", so average precision
equals scikit-learn's `average_precision_score` (LAReQA's official scorer) exactly, ties
included. recall@k / nDCG@k / MRR / rank distance then read a tie at the cutoff as a miss, a
lower bound; with float embeddings of distinct texts ties essentially never occur.

Metrics (R = number of relevant items of the query, r_j their ranks, hits(r) = #{i: r_i <= r}):

- AP (LAReQA mAP, Roy et al. 2020, arXiv 2004.05484) = (1/R) sum_j hits(r_j) / r_j
- AP@k (XTREME-R's LAReQA "mAP@20", Ruder et al. 2021; `average_precision_at_k` in
  google-research/xtreme `third_party/utils_lareqa.py`)
  = (1/min(R, k)) sum_{j: r_j <= k} hits(r_j) / r_j. ranx's / trec_eval's map@k divide by R
  instead; the two agree whenever R <= k, which always holds for LAReQA (R <= 11 < 20).
- RR = 1 / min_j r_j (no cutoff), recall@k = #{j: r_j <= k} / R,
- nDCG@k (binary gains, log2 discount) = sum_{j: r_j <= k} 1/log2(r_j + 1)
  / sum_{i=1}^{min(R, k)} 1/log2(i + 1).

A query with no relevant item (all padding) gets NaN from every metric; callers drop such
queries before averaging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor

from batchmix.core.errors import BatchmixError

# Keep the [chunk, R, N] boolean comparison in cache-sized pieces: measured ~5x faster on CPU
# than one huge comparison, and it bounds memory for the ~13k x 13k multilingual pool.
_COMPARE_BUDGET = 1 << 22

def count_scoring_at_least(scores: Tensor, thresholds: Tensor, budget: int = _COMPARE_BUDGET) -> Tensor:
    """`out[q, j]` = number of candidates `n` with `scores[q, n] >= thresholds[q, j]`.

    scores: [Q, N]; thresholds: [Q, R]; returns LongTensor [Q, R]. Summing this over disjoint
    candidate blocks gives the rank in their union, which is how the LAReQA evaluator gets the
    monolingual, cross-lingual and multilingual ranks from one score matrix.
    """
    n_queries, n_candidates = scores.shape
    n_thresholds = thresholds.shape[1]
    out = torch.empty((n_queries, n_thresholds), dtype=torch.long, device=scores.device)
    step = max(1, budget // max(1, n_thresholds * n_candidates))
    for start in range(0, n_queries, step):
        stop = start + step
        block = scores[start:stop].unsqueeze(1) >= thresholds[start:stop].unsqueeze(2)
        out[start:stop] = block.sum(dim=2)
    return out


def relevant_ranks(scores: Tensor, relevant: Tensor, budget: int = _COMPARE_BUDGET) -> Tensor:
    """Pessimistic 1-based rank of every relevant item in its query's full ranking (pad -> 0).

    rank = #candidates scoring >= the item's score (itself included); see the module docstring.
    """
    if scores.dim() != 2 or relevant.dim() != 2 or scores.shape[0] != relevant.shape[0]:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} must be [Q, N] and [Q, R]")
    valid = relevant >= 0
    own_scores = scores.gather(1, relevant.clamp(min=0))
    ranks = count_scoring_at_least(scores, own_scores, budget)
    return torch.where(valid, ranks, torch.zeros_like(ranks))


def _valid_sorted(ranks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Ranks sorted ascending per row (padding last), their validity mask, and R per row."""
    valid = ranks > 0
    padded = torch.where(valid, ranks, torch.full_like(ranks, torch.iinfo(torch.long).max))
    ordered = padded.sort(dim=1).values
    return ordered, ordered != torch.iinfo(torch.long).max, valid.sum(dim=1)


def _nan_where_empty(values: Tensor, n_relevant: Tensor) -> Tensor:
    return torch.where(n_relevant > 0, values, torch.full_like(values, float("nan")))


def _precision_terms(ordered: Tensor, is_valid: Tensor) -> Tensor:
    """hits(r_j) / r_j for each (sorted) relevant item; 0 for padding."""
    # hits(r_j) = #relevant with rank <= r_j: counts tied relevant items too (pessimistic ties).
    hits = torch.searchsorted(ordered, ordered, right=True)
    terms = hits.double() / ordered.double()
    return torch.where(is_valid, terms, torch.zeros_like(terms))


def average_precision(ranks: Tensor) -> Tensor:
    """AP over the full ranking (LAReQA mAP per query); float64 [Q]."""
    ordered, is_valid, n_relevant = _valid_sorted(ranks)
    ap = _precision_terms(ordered, is_valid).sum(dim=1) / n_relevant.clamp(min=1).double()
    return _nan_where_empty(ap, n_relevant)


def ap_at_k(ranks: Tensor, k: int) -> Tensor:
    """AP truncated at k, normalised by min(R, k) (XTREME-R mAP@k); float64 [Q]."""
    ordered, is_valid, n_relevant = _valid_sorted(ranks)
    terms = torch.where(ordered <= k, _precision_terms(ordered, is_valid), torch.zeros((), dtype=torch.double))
    ap = terms.sum(dim=1) / n_relevant.clamp(min=1, max=k).double()
    return _nan_where_empty(ap, n_relevant)


def reciprocal_rank(ranks: Tensor) -> Tensor:
    """1 / rank of the best-ranked relevant item (no cutoff); float64 [Q]."""
    ordered, _, n_relevant = _valid_sorted(ranks)
    return _nan_where_empty(1.0 / ordered[:, 0].double(), n_relevant)


def recall_at_k(ranks: Tensor, k: int) -> Tensor:
    """Share of the relevant items ranked in the top k; float64 [Q]."""
    valid = ranks > 0
    n_relevant = valid.sum(dim=1)
    found = (valid & (ranks <= k)).sum(dim=1).double()
    return _nan_where_empty(found / n_relevant.clamp(min=1).double(), n_relevant)


def ndcg_at_k(ranks: Tensor, k: int) -> Tensor:
    """nDCG@k with binary gains and log2(rank + 1) discounts; float64 [Q]."""
    valid = ranks > 0
    n_relevant = valid.sum(dim=1)
    in_top = valid & (ranks <= k)
    gains = torch.where(in_top, 1.0 / torch.log2(ranks.double() + 1.0), torch.zeros((), dtype=torch.double))
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.double, device=ranks.device))
    ideal = torch.cat([torch.zeros(1, dtype=torch.double, device=ranks.device), discounts.cumsum(0)])
    idcg = ideal[n_relevant.clamp(max=k)]
    return _nan_where_empty(gains.sum(dim=1) / idcg.clamp(min=1e-12), n_relevant)


# Every metric batchmix scores, by name, in the order of metrics.json: a function from the relevant
# items' ranks to one value per query (float64 [Q], NaN for a query without a relevant item). Each
# is scored in every setting (`<name>/multi`, `<name>/mono/<L>`, ...) and is a valid objective.
_METRICS: dict[str, Callable[[Tensor], Tensor]] = {
    "map": average_precision,
    "map@20": partial(ap_at_k, k=20),
    "mrr": reciprocal_rank,
    **{f"recall@{k}": partial(recall_at_k, k=k) for k in (1, 5, 10, 100)},
    "ndcg@10": partial(ndcg_at_k, k=10),
}


def metric_names() -> tuple[str, ...]:
    """The registered metrics' names, read at use time so a metric registered later is scored too."""
    return tuple(_METRICS)


@contextmanager
def registered(name: str, per_query: Callable[[Tensor], Tensor]) -> Iterator[str]:
    """Score one more metric while the block runs (e.g. a test, or a study that wants it)."""
    if name in _METRICS:
        raise BatchmixError(f"metric {name!r} is already registered")
    _METRICS[name] = per_query
    try:
        yield name
    finally:
        del _METRICS[name]


def per_query_metrics(ranks: Tensor) -> dict[str, Tensor]:
    """Every registered metric per query (float64 [Q]) from the relevant items' ranks."""
    return {name: per_query(ranks) for name, per_query in _METRICS.items()}
