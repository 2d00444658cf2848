"""LAReQA-style evaluation: monolingual, cross-lingual and multilingual answer retrieval + language bias.

Relevance (LAReQA, Roy et al. 2020, arXiv 2004.05484): question id `x` asked in language X is
answered, in language Y, by the answer sentence of the question with id `x` in Y - when `x`
exists in Y (XQuAD-R: always, 11-way parallel; MLQA-R: only 2-4 of 7 languages hold each id).

Settings, all ranked by the dot product of query and candidate embeddings (= cosine: the
*caller* L2-normalises; scores are computed in float32 - float64 if any embedding is float64 -
so bf16/fp16 outputs do not create spurious ties):

- multilingual: every question of every language against the pool of all candidates of all
  languages; relevant = the id's answer sentence in every language holding it. `<m>/multi` is
  the mean over all questions (LAReQA's mAP; on XQuAD-R equal to the macro mean over languages),
  `<m>/multi/<L>` the mean over the questions asked in L.
- monolingual: L questions against L candidates. `<m>/mono/<L>`; `<m>/mono` = macro mean.
- cross-lingual: X questions against Y candidates, X != Y. `<m>/cross/<X>-<Y>`; `<m>/cross` =
  macro mean over the pairs with at least one answerable question. Questions whose id is absent
  from Y are skipped: `n_skipped/cross/<X>-<Y>` (and the total `n_skipped/cross`).

`<m>` ranges over `metrics.metric_names()` (map, map@20, mrr, recall@{1,5,10,100}, ndcg@10;
definitions and the tie rule in `batchmix.eval.metrics`). With one relevant item per query,
as in the mono/cross settings, map = mrr.

Language bias (hybrid batch training, Elmahdy, Lin and Ahmad 2024, arXiv 2408.10536), both from the
multilingual-pool ranks r_q,Y of query q's relevant answers (one per language Y holding its id),
over questions with answers in >= 2 languages:

- `bias/rank_distance` = macro_L mean_{q asked in L} (max_Y r_q,Y - min_Y r_q,Y). Lower = less
  biased; a perfect, language-agnostic ranking still scores R - 1 (the R answers fill ranks 1..R).
- `bias/own_lang_first` = macro_L share of L's questions whose own-language answer ranks strictly
  above all their other-language answers. Lower = less own-language preference.
- `bias/mrc` = mean rank correlation (Yang, Jiang and Baldwin 2025, arXiv 2509.06195): Spearman's
  correlation between the rankings of the whole multilingual pool by the parallel questions of one
  id, macro over languages (`batchmix.eval.rank_correlation`). Higher = less biased; 1 = every
  translation ranks the pool alike.
Per-language values: `bias/rank_distance/<L>`, `bias/own_lang_first/<L>`, `bias/mrc/<L>`. Keys whose
mean would be over nothing (no cross pairs, no multi-language ids) are left out, never NaN.

All 1 + L + L(L-1) settings come from one matrix product per query chunk against the whole pool:
counting, per language block, the candidates scoring >= each relevant answer gives the rank
within that block (mono/cross) and, summed over blocks, within the pool (multi). An optional
`batchmix.eval.trec.RunCollector` receives those same score chunks and keeps each setting's
top-k candidates (for TREC run files) without scoring a second time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from batchmix.data.corpus import LAReQACorpus, LanguageSet
from batchmix.core.errors import BatchmixError
from batchmix.eval.metrics import count_scoring_at_least, metric_names, per_query_metrics
from batchmix.eval.rank_correlation import mean_rank_correlation
from batchmix.eval.trec import RunCollector

CandidateMode = Literal["sentence", "context"]
CANDIDATE_MODES: tuple[str, ...] = ("sentence", "context")
# The key layout of the metrics (module docstring), which `sweep.objectives` accepts as objectives:
# `<m>/<setting>[/<lang>|/<X>-<Y>]` for m in metrics.metric_names() and the settings of
# `eval.settings.EVAL_SETTINGS`, and `bias/<name>[/<lang>]`.
BIAS_NAMES: tuple[str, ...] = ("rank_distance", "own_lang_first", "mrc")
BIAS_HIGHER_IS_BETTER: tuple[str, ...] = ("mrc",)  # a rank correlation; the other bias measures improve downwards

_QUERY_CHUNK = 512


def _check_corpus(corpus: LAReQACorpus) -> None:
    if not corpus.languages:
        raise BatchmixError(f"corpus {corpus.name!r} has no languages; load at least one <lang>.json")
    for lang, ls in corpus.languages.items():
        if len(ls.question_ids) != len(ls.questions) or len(ls.question_ids) != len(ls.answer_index):
            raise BatchmixError(
                f"corpus {corpus.name!r} language {lang!r}: question_ids ({len(ls.question_ids)}), "
                f"questions ({len(ls.questions)}) and answer_index ({len(ls.answer_index)}) differ in "
                "length; rebuild the corpus with the LAReQA loader"
            )
        if not ls.candidates:
            raise BatchmixError(f"corpus {corpus.name!r} language {lang!r} has no candidates; drop the language")
        if len(set(ls.question_ids)) != len(ls.question_ids):
            raise BatchmixError(
                f"corpus {corpus.name!r} language {lang!r} repeats a question id, so relevance is "
                "ambiguous; ids must be unique within a language"
            )
        bad = [a for a in ls.answer_index if not 0 <= a < len(ls.candidates)]
        if bad:
            raise BatchmixError(
                f"corpus {corpus.name!r} language {lang!r}: answer_index {bad[0]} is outside its "
                f"{len(ls.candidates)} candidates; rebuild the corpus with the LAReQA loader"
            )


def _check_embeddings(name: str, emb: Mapping[str, Tensor], corpus: LAReQACorpus, sizes: dict[str, int]) -> int:
    """Validate one side (questions or candidates); returns the embedding width."""
    missing = [lang for lang in corpus.langs if lang not in emb]
    if missing:
        raise BatchmixError(f"{name} has no embeddings for language(s) {missing}; encode every corpus language")
    widths = set()
    for lang in corpus.langs:
        t = emb[lang]
        if t.dim() != 2 or t.shape[0] != sizes[lang]:
            raise BatchmixError(
                f"{name}[{lang!r}] has shape {tuple(t.shape)}, expected ({sizes[lang]}, D): one row per "
                f"{'question' if name == 'q_emb' else 'candidate'} of that language, in corpus order"
            )
        if not torch.isfinite(t).all():
            raise BatchmixError(f"{name}[{lang!r}] contains NaN or inf; check the encoder's output")
        widths.add(t.shape[1])
    if len(widths) != 1:
        raise BatchmixError(f"{name} embedding widths differ across languages: {sorted(widths)}; use one encoder")
    return widths.pop()


def _relevant_candidates(corpus: LAReQACorpus, offsets: dict[str, int]) -> dict[str, Tensor]:
    """Per query language X: LongTensor[n_X, L], pool index of each question's answer in each language (-1: absent)."""
    answer_of = {
        lang: dict(zip(ls.question_ids, ls.answer_index)) for lang, ls in corpus.languages.items()
    }
    out = {}
    for lang, ls in corpus.languages.items():
        rows = [
            [offsets[y] + answer_of[y][qid] if qid in answer_of[y] else -1 for y in corpus.langs]
            for qid in ls.question_ids
        ]
        out[lang] = torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(corpus.langs))
    return out


def _block_counts(scores: Tensor, thresholds: Tensor, bounds: Sequence[tuple[int, int]]) -> Tensor:
    """`out[q, y, z]` = #candidates of language block z scoring >= thresholds[q, y]."""
    return torch.stack([count_scoring_at_least(scores[:, a:b], thresholds) for a, b in bounds], dim=2)


def _mean(values: Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")


def _add_setting(out: dict[str, float], ranks: Tensor, suffix: str) -> dict[str, float]:
    """Mean of every metric over the queries of one setting; returns the means too."""
    means = {name: _mean(v) for name, v in per_query_metrics(ranks).items()}
    for name, value in means.items():
        out[f"{name}/{suffix}"] = value
    return means


def _bias(multi_ranks: Tensor, own: int) -> tuple[Tensor, Tensor]:
    """Rank distance and own-language-first flag per query with answers in >= 2 languages."""
    valid = multi_ranks > 0
    eligible = valid.sum(dim=1) >= 2
    ranks = multi_ranks[eligible]
    valid = valid[eligible]
    big = torch.iinfo(torch.long).max
    best = torch.where(valid, ranks, torch.full_like(ranks, big)).min(dim=1).values
    worst = torch.where(valid, ranks, torch.zeros_like(ranks)).max(dim=1).values
    others = valid.clone()
    others[:, own] = False
    best_other = torch.where(others, ranks, torch.full_like(ranks, big)).min(dim=1).values
    own_first = ranks[:, own] < best_other  # the own-language answer always exists (own = query language)
    return (worst - best).double(), own_first.double()


@torch.no_grad()
def evaluate_embeddings(
    corpus: LAReQACorpus,
    q_emb: Mapping[str, Tensor],
    c_emb: Mapping[str, Tensor],
    device: str | torch.device | None = None,
    progress: bool = True,
    runs: RunCollector | None = None,
) -> dict[str, float]:
    """Every LAReQA metric (mono / cross / multi, per language and macro) plus language bias.

    q_emb[L]: [n_questions(L), D], c_emb[L]: [n_candidates(L), D], rows in corpus order and
    L2-normalised by the caller (scores are plain dot products). Each candidate is encoded once
    and shared by every setting. `device`: where to score (default: where the embeddings are).
    `progress`: a tqdm bar over questions (shown only on a terminal). `runs`: if given, filled
    with every setting's top-k candidates per question from the same score chunks (see
    `batchmix.eval.trec`); None (default) costs nothing.
    Returns a flat dict of floats; keys are described in the module docstring.
    """
    _check_corpus(corpus)
    langs = corpus.langs
    width_q = _check_embeddings("q_emb", q_emb, corpus, {l: len(ls.questions) for l, ls in corpus.languages.items()})
    width_c = _check_embeddings("c_emb", c_emb, corpus, {l: len(ls.candidates) for l, ls in corpus.languages.items()})
    if width_q != width_c:
        raise BatchmixError(f"question width {width_q} != candidate width {width_c}; encode both with one model")
    device = torch.device(device) if device is not None else q_emb[langs[0]].device

    offsets, bounds, start = {}, [], 0
    for lang in langs:
        offsets[lang] = start
        bounds.append((start, start + len(corpus.languages[lang].candidates)))
        start = bounds[-1][1]
    dtype = torch.float32
    for t in [q_emb[lang] for lang in langs] + [c_emb[lang] for lang in langs]:
        dtype = torch.promote_types(dtype, t.dtype) if t.is_floating_point() else dtype
    pool = torch.cat([c_emb[lang].detach().to(device=device, dtype=dtype) for lang in langs])
    relevant = _relevant_candidates(corpus, offsets)
    if runs is not None:
        runs.begin(langs, bounds)

    # Per query language X: pool ranks ([n_X, L]) and within-language-block ranks ([n_X, L]) of
    # each question's answer in each language; 0 where the id is absent from that language.
    multi_ranks: dict[str, Tensor] = {}
    block_ranks: dict[str, Tensor] = {}
    total = sum(len(ls.questions) for ls in corpus.languages.values())
    bar = tqdm(total=total, desc=f"LAReQA eval ({corpus.name})", unit="q", disable=None if progress else True, leave=False)
    diagonal = torch.arange(len(langs), device=device)
    for lang in langs:
        queries = q_emb[lang].detach().to(device=device, dtype=dtype)
        rel = relevant[lang].to(device)
        multi_parts, block_parts = [], []
        for a in range(0, queries.shape[0], _QUERY_CHUNK):
            chunk_rel = rel[a : a + _QUERY_CHUNK]
            valid = chunk_rel >= 0
            scores = queries[a : a + _QUERY_CHUNK] @ pool.T
            answer_scores = scores.gather(1, chunk_rel.clamp(min=0))
            counts = _block_counts(scores, answer_scores, bounds)
            zero = torch.zeros((), dtype=torch.long, device=device)
            multi_parts.append(torch.where(valid, counts.sum(dim=2), zero).cpu())
            block_parts.append(torch.where(valid, counts[:, diagonal, diagonal], zero).cpu())
            if runs is not None:
                runs.add(lang, scores)
            bar.update(chunk_rel.shape[0])
        multi_ranks[lang] = torch.cat(multi_parts) if multi_parts else torch.zeros((0, len(langs)), dtype=torch.long)
        block_ranks[lang] = torch.cat(block_parts) if block_parts else torch.zeros((0, len(langs)), dtype=torch.long)
    bar.close()

    out: dict[str, float] = {}

    # Multilingual pool: per query language, then the mean over all questions (LAReQA).
    asked = [lang for lang in langs if len(corpus.languages[lang].questions)]
    for lang in asked:
        _add_setting(out, multi_ranks[lang], f"multi/{lang}")
    if asked:
        _add_setting(out, torch.cat([multi_ranks[lang] for lang in asked]), "multi")

    # Monolingual: one relevant item per question (its own-language answer).
    mono = {}
    for y, lang in enumerate(langs):
        if lang not in asked:
            continue
        mono[lang] = _add_setting(out, block_ranks[lang][:, y : y + 1], f"mono/{lang}")
    if mono:
        for name in metric_names():
            out[f"{name}/mono"] = sum(m[name] for m in mono.values()) / len(mono)

    # Cross-lingual: X questions against Y candidates, skipping ids absent from Y.
    cross = []
    n_skipped_total = 0
    for x, src in enumerate(langs):
        for y, tgt in enumerate(langs):
            if x == y:
                continue
            ranks = block_ranks[src][:, y : y + 1]
            answerable = ranks[:, 0] > 0
            n_skipped = int((~answerable).sum())
            n_skipped_total += n_skipped
            out[f"n_skipped/cross/{src}-{tgt}"] = float(n_skipped)
            if answerable.any():
                cross.append(_add_setting(out, ranks[answerable], f"cross/{src}-{tgt}"))
    if len(langs) > 1:
        out["n_skipped/cross"] = float(n_skipped_total)
    if cross:
        for name in metric_names():
            out[f"{name}/cross"] = sum(m[name] for m in cross) / len(cross)

    # Language bias in the multilingual pool: per query language, then macro over languages.
    distance, own_first = {}, {}
    for x, lang in enumerate(langs):
        d, f = _bias(multi_ranks[lang], x)
        if d.numel():
            distance[lang] = out[f"bias/rank_distance/{lang}"] = float(d.mean())
            own_first[lang] = out[f"bias/own_lang_first/{lang}"] = float(f.mean())
    if distance:
        out["bias/rank_distance"] = sum(distance.values()) / len(distance)
        out["bias/own_lang_first"] = sum(own_first.values()) / len(own_first)
    out.update(mean_rank_correlation(corpus, q_emb, pool))
    return out


def candidate_texts(ls: LanguageSet, candidate_mode: CandidateMode) -> list[str]:
    """What the passage encoder sees for each candidate of one language.

    "sentence": the answer-candidate sentence alone. "context": the sentence, a space, then its
    whole paragraph - LAReQA's baselines encoded (sentence, context) and XTREME-R concatenated the
    two, so the sentence is disambiguated by its surroundings while staying first (and so
    surviving truncation).
    """
    if check_candidates(candidate_mode) == "sentence":
        return list(ls.candidates)
    if len(ls.candidate_contexts) != len(ls.candidates):
        raise BatchmixError(
            f"candidate_mode='context' but language {ls.lang!r} has {len(ls.candidate_contexts)} "
            f"contexts for {len(ls.candidates)} candidates; load the corpus with contexts or use "
            "candidate_mode='sentence'"
        )
    return [f"{s} {c}" for s, c in zip(ls.candidates, ls.candidate_contexts)]


def check_candidates(mode: object) -> CandidateMode:
    """`eval.candidates`: what a candidate's text is (see `candidate_texts`)."""
    if mode not in CANDIDATE_MODES:
        raise BatchmixError(f"eval.candidates={mode!r} is not one of {list(CANDIDATE_MODES)}: use eval.candidates=sentence (LAReQA) or context")
    return mode  # type: ignore[return-value]
