"""Mean rank correlation (MRC): do parallel questions rank the multilingual pool alike?

A language-agnostic retriever ranks the pool the same way whatever the language of the question,
so the rankings that the translations of one question give the same candidates should agree. MRC
(Yang, Jiang and Baldwin 2025, "Language Bias in Information Retrieval: The Nature of the Beast
and Mitigation Methods", arXiv 2509.06195) measures that with Spearman's rank correlation:

    RC_i(a, b) = Spearman(R(q_i^a, D), R(q_i^b, D))      the rankings of the pool D by question i in a and in b
    RC_i(a)    = mean over the other languages b holding i of RC_i(a, b)
    bias/mrc/<a> = mean over the questions i asked in a (and in at least one other language) of RC_i(a)
    bias/mrc     = macro mean over languages, as rank distance

Higher = less language bias; 1 = every translation ranks the whole pool identically. Unlike rank
distance, which looks only at where each question's answers land, MRC reads the whole ranking.

Hand-written: Spearman over the full pool for each group of parallel questions is one argsort and
one small correlation matrix; scipy.stats.spearmanr gives the same numbers (tests/test_rank_correlation.py)
but would materialise ranks for every question at once. Ties (equal scores) take the order argsort
gives them, not average ranks: with float scores they are rare, and the tests check the tie-free case.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from batchmix.data.corpus import LAReQACorpus


def _ranks(scores: Tensor) -> Tensor:
    """The 0-based rank of every pool candidate in each row's ranking (the position of the score in ascending order)."""
    if scores.device.type == "cpu":  # numpy's SIMD introsort: ~2.7x torch's CPU argsort on 13k-wide rows
        order = torch.from_numpy(np.argsort(scores.numpy(), axis=1))
    else:
        order = scores.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return ranks


def _standardized_ranks(scores: Tensor, dtype: torch.dtype) -> Tensor:
    """Each row's ranks, centred and scaled to unit norm: the dot product of two rows is their Spearman correlation."""
    r = _ranks(scores).to(dtype)
    r = r - r.mean(dim=1, keepdim=True)
    return r / r.norm(dim=1, keepdim=True)


def spearman_matrix(scores: Tensor) -> Tensor:
    """Spearman's correlation between every two rows of `scores` [k, N] (the Pearson correlation of their ranks) [k, k]."""
    r = _standardized_ranks(scores, torch.float64)
    return r @ r.T


_ROWS_PER_CHUNK = 1024  # questions ranked at once: [1024, N] scores and ranks (~100 MB for the XQuAD-R pool)


@torch.no_grad()
def mean_rank_correlation(corpus: LAReQACorpus, q_emb: Mapping[str, Tensor], pool: Tensor) -> dict[str, float]:
    """`bias/mrc` and `bias/mrc/<lang>` over the question ids asked in at least two languages.

    q_emb[L]: [n_questions(L), D] in corpus order; pool: [N, D], every candidate of every language
    (the multilingual pool); scores are dot products, as in `scoring.evaluate_embeddings`. The
    questions of a few hundred ids are ranked at once, and each id's correlation matrix is one
    batched product of its standardised rank rows."""
    members: dict[str, list[tuple[str, int]]] = defaultdict(list)  # question id -> (language, row)
    for lang, ls in corpus.languages.items():
        for row, qid in enumerate(ls.question_ids):
            members[qid].append((lang, row))
    groups = [m for m in members.values() if len(m) >= 2]
    if not groups:
        return {}
    width = max(len(m) for m in groups)
    per_lang: dict[str, list[float]] = defaultdict(list)
    step = max(1, _ROWS_PER_CHUNK // width)
    for start in range(0, len(groups), step):
        chunk = groups[start : start + step]
        queries = torch.stack([q_emb[lang][row] for m in chunk for lang, row in m]).to(device=pool.device, dtype=pool.dtype)
        r = _standardized_ranks(queries @ pool.T, torch.float32)  # ranks < 2^24 are exact; correlations to ~1e-7
        padded = torch.zeros(len(chunk), width, r.shape[1], dtype=r.dtype, device=r.device)
        offset = 0
        for g, m in enumerate(chunk):
            padded[g, : len(m)] = r[offset : offset + len(m)]
            offset += len(m)
        corr = torch.bmm(padded, padded.transpose(1, 2)).cpu()  # [groups, width, width]; padding rows are 0
        for g, m in enumerate(chunk):
            k = len(m)
            c = corr[g, :k, :k]
            rc = (c.sum(dim=1) - c.diagonal()) / (k - 1)  # RC_i(a): the mean over the other languages
            for (lang, _), value in zip(m, rc.tolist()):
                per_lang[lang].append(value)
    out = {f"bias/mrc/{lang}": sum(v) / len(v) for lang, v in per_lang.items()}
    out["bias/mrc"] = sum(out.values()) / len(out)
    return out
