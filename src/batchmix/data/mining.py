"""Hard-negative mining: for every training pair, the pool passages the model ranks high that are
not an answer to the pair's question in any language.

`batchmix mine` (batchmix/run/mine.py) runs it on the training data of a `data` config and
writes the JSONL training format with a `negatives` column (data/jsonl.py), which training reads
with `data.train_file=<it> data.hard_negatives=N`.

The options follow sentence-transformers' `util.mine_hard_negatives`, so a recipe carries over:
candidates are ranked by cosine similarity to the query; those at rank `range_min` .. `range_max`
(0-based, the query's own answers already removed) are considered, best first; `margin` keeps only
a candidate scoring at most `positive score - margin` (ST's `absolute_margin`), `relative_margin`
at most `positive score * (1 - relative_margin)`; the first `num_negatives` left are written.

Translation-aware: the pool records, for every passage, the ids whose answer it is (in any
language). A candidate answering the query's own id, or equal to its positive, is never a negative:
a translation of the answer is a false negative in a multilingual pool. The written negative carries
every id it answers (`answers`, and the smallest as `id`), so training masks it for each of those
queries (losses/false_negatives.py).

Pools (`pool`): `language`: a query's candidates are the passages in its positive's language (what
`data.negatives_lang=same` then trains on); `all`: passages in every language, one index.

Search: faiss (`IndexFlatIP`, exact inner product) when installed, else a chunked torch top-k; both
exact, so they return the same ranking (tested). Written here rather than calling ST's function
because that one needs a SentenceTransformer model and knows nothing of parallel ids.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from batchmix.data.corpus import LAReQACorpus, Negative, Pair, TrainingGroups
from batchmix.core.errors import BatchmixError
from batchmix.core.options import positive_int

POOLS = ("language", "all")
SEARCH = ("auto", "faiss", "torch")
NO_FAISS = "mine.search=faiss needs faiss: pip install faiss-cpu (or faiss-gpu), or mine.search=torch"


@dataclass
class MiningOptions:
    num_negatives: int = 3
    range_min: int = 0
    range_max: int = 50
    margin: float | None = None
    relative_margin: float | None = None
    pool: str = "language"
    search: str = "auto"

    def __post_init__(self) -> None:
        for key in ("num_negatives", "range_max"):
            positive_int(f"mine.{key}", getattr(self, key))
        if isinstance(self.range_min, bool) or not isinstance(self.range_min, int) or not 0 <= self.range_min < self.range_max:
            raise BatchmixError(f"mine.range_min={self.range_min!r} must be an integer in [0, mine.range_max={self.range_max})")
        for key in ("margin", "relative_margin"):
            value = getattr(self, key)
            # not NaN: `score > nan` is never true, so a NaN margin would silently filter nothing
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise BatchmixError(f"mine.{key}={value!r} must be null or a number, finite (e.g. 0.05)")
        if self.pool not in POOLS:
            raise BatchmixError(f"mine.pool={self.pool!r} is not one of {list(POOLS)}: language (per-language pools) or all")
        if self.search not in SEARCH:
            raise BatchmixError(f"mine.search={self.search!r} is not one of {list(SEARCH)}")
        if self.search == "faiss" and importlib.util.find_spec("faiss") is None:  # before encoding, not after
            raise BatchmixError(NO_FAISS)


@dataclass
class Pool:
    """Candidate passages: text, language, and the parallel ids each one answers."""

    texts: list[str] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    answers: list[frozenset[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


def build_pool(groups: TrainingGroups, corpus: LAReQACorpus | None = None) -> Pool:
    """Every distinct (language, passage) of the training pairs, plus every candidate sentence of
    `corpus` (the training articles of a LAReQA corpus: all their sentences, not only answers), each
    with the ids it answers."""
    answers: dict[tuple[str, str], set[str]] = {}
    for qid, pairs in zip(groups.ids, groups.pairs):
        for lang in sorted(pairs):
            answers.setdefault((lang, pairs[lang].positive), set()).update((qid, *pairs[lang].answers))
    if corpus is not None:
        for lang, ls in corpus.languages.items():
            for text in ls.candidates:
                answers.setdefault((lang, text), set())
            for qid, a in zip(ls.question_ids, ls.answer_index):
                answers[(lang, ls.candidates[a])].add(qid)
    keys = sorted(answers)
    return Pool(texts=[t for _, t in keys], langs=[lang for lang, _ in keys], answers=[frozenset(answers[k]) for k in keys])


def top_k(queries: torch.Tensor, passages: torch.Tensor, k: int, search: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices) [Q, k] of the k highest inner products, best first (k <= number of passages)."""
    use_faiss = search == "faiss"
    if search == "auto":
        use_faiss = importlib.util.find_spec("faiss") is not None
    if use_faiss:
        try:
            logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its "loading AVX2" lines are noise
            import faiss
        except ImportError:
            raise BatchmixError(NO_FAISS) from None
        index = faiss.IndexFlatIP(passages.shape[1])
        index.add(passages.float().contiguous().numpy())
        scores, idx = index.search(queries.float().contiguous().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(idx).long()
    out_s, out_i = [], []
    for start in range(0, len(queries), 1024):  # chunks: a Q x P score matrix at once could be GBs
        s, i = torch.topk(queries[start : start + 1024].float() @ passages.float().T, k, dim=1)
        out_s.append(s)
        out_i.append(i)
    return torch.cat(out_s), torch.cat(out_i)


def mine(
    groups: TrainingGroups,
    pool: Pool,
    encode_queries: Callable[[list[str]], torch.Tensor],
    encode_passages: Callable[[list[str]], torch.Tensor],
    options: MiningOptions,
) -> tuple[TrainingGroups, dict[str, Any]]:
    """`groups` with every pair's `negatives` mined (replacing any it had), and run statistics:
    texts encoded, seconds encoding / searching, texts/s, pairs that got fewer than asked."""
    rows = [(g, lang) for g, pairs in enumerate(groups.pairs) for lang in sorted(pairs)]
    if not rows or not len(pool):
        raise BatchmixError("nothing to mine: the training data or the candidate pool is empty; check the data config")
    t0 = time.perf_counter()
    q_emb = encode_queries([groups.pairs[g][lang].query for g, lang in rows])
    p_emb = encode_passages(pool.texts)
    encode_s = time.perf_counter() - t0
    position = {(lang, text): i for i, (lang, text) in enumerate(zip(pool.langs, pool.texts))}
    pos_index = torch.tensor([position[(lang, groups.pairs[g][lang].positive)] for g, lang in rows])
    pos_score = (q_emb * p_emb[pos_index]).sum(-1)

    if options.pool == "language":
        members: dict[str, list[int]] = {}
        for i, lang in enumerate(pool.langs):
            members.setdefault(lang, []).append(i)
        pool_of_row = [lang for _, lang in rows]
    else:
        members = {"all": list(range(len(pool)))}
        pool_of_row = ["all"] * len(rows)
    t1 = time.perf_counter()
    mined: dict[int, tuple[Negative, ...]] = {}
    for name, member in members.items():
        row_ids = [r for r, p in enumerate(pool_of_row) if p == name]
        if not row_ids:
            continue
        member_t = torch.tensor(member)
        # Enough beyond range_max for the query's own answers (at most one per language) to be skipped.
        k = min(len(member), options.range_max + len(groups.languages) + 1)
        scores, idx = top_k(q_emb[row_ids], p_emb[member_t], k, options.search)
        for r, s_row, i_row in zip(row_ids, scores.tolist(), member_t[idx].tolist()):
            g, lang = rows[r]
            qid, positive = groups.ids[g], groups.pairs[g][lang].positive
            ceiling = float("inf")
            if options.margin is not None:
                ceiling = min(ceiling, float(pos_score[r]) - options.margin)
            if options.relative_margin is not None:
                ceiling = min(ceiling, float(pos_score[r]) * (1 - options.relative_margin))
            chosen, rank = [], -1
            for score, i in zip(s_row, i_row):
                if qid in pool.answers[i] or (pool.langs[i] == lang and pool.texts[i] == positive):
                    continue  # the query's own answer, in some language: never a negative
                rank += 1
                if rank < options.range_min:
                    continue
                if rank >= options.range_max:
                    break
                if score > ceiling:
                    continue
                chosen.append(Negative(pool.texts[i], pool.langs[i], min(pool.answers[i], default=None), tuple(pool.answers[i])))
                if len(chosen) == options.num_negatives:
                    break
            mined[r] = tuple(chosen)
    search_s = time.perf_counter() - t1
    out_pairs: list[dict[str, Pair]] = [dict() for _ in groups.pairs]
    for r, (g, lang) in enumerate(rows):
        pair = groups.pairs[g][lang]
        out_pairs[g][lang] = Pair(pair.query, pair.positive, mined.get(r, ()), pair.answers)
    texts = len(rows) + len(pool)
    stats = {
        "pairs": len(rows),
        "pool": len(pool),
        "texts_encoded": texts,
        "encode_seconds": encode_s,
        "search_seconds": search_s,
        "texts_per_second": texts / (encode_s + search_s) if encode_s + search_s > 0 else float("inf"),
        "negatives": sum(len(v) for v in mined.values()),
        "pairs_short": sum(len(v) < options.num_negatives for v in mined.values()),
    }
    return TrainingGroups(ids=list(groups.ids), pairs=out_pairs), stats
