"""Training-free fixes for language bias, scored beside the model in every final evaluation.

A reviewer's first question of a ratio study: does a fix that needs no training already get what
training on a ratio gets? So every evaluation round that scores a run's reported corpora (train.py's
`before` and `final` rounds, eval.py) also scores each fix in `eval.baselines.methods` on the same
embeddings, and the run's metrics.json holds the result (runs that keep no weights still have it):

    shift/map/multi, lir/bias/rank_distance, mlqa-r/centring/map/mono, val/shift/map/multi, ...

i.e. `<method>/<metric>` under the corpus's usual prefix, for the aggregate metrics (macro / pooled;
not per language or pair). The fixes (`shift.py`, `lir.py`, `centring.py`) are fitted on text no
scored split holds: `eval.baselines.fit_ids` question ids sampled (seed 0, the same for every run)
from the training articles, each with its question and answer sentence in every language, encoded
in the same round by the model under evaluation. A corpus with a language the fit never saw gets
no keys for the fix, with a warning: never numbers from a fix that did not apply.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from batchmix.core.errors import BatchmixError
from batchmix.data.corpus import LAReQACorpus, LanguageSet
from batchmix.eval.baselines.base import Baseline, Embeddings, FitSample, renormalise
from batchmix.eval.baselines.centring import Centring
from batchmix.eval.baselines.lir import LIR
from batchmix.eval.baselines.shift import Shift
from batchmix.eval.scoring import evaluate_embeddings

log = logging.getLogger("batchmix")

# name -> a fix built from the `eval.baselines` options
BASELINES: dict[str, Callable[[Mapping[str, Any]], Baseline]] = {
    "shift": lambda options: Shift(source=options["shift_source"]),
    "lir": lambda options: LIR(rank=options["lir_rank"]),
    "centring": lambda options: Centring(),
}
FIT_SEED = 0  # the fit sample is the same for every run, whatever its seed: the fixes compare across runs

__all__ = ["BASELINES", "Baseline", "FitSample", "check_baselines", "fit_corpus", "fit_baselines", "baseline_metrics",
           "table_keys"]


def table_keys(methods: list[str]) -> tuple[str, ...]:
    """The rows each fix adds to a run's printed table: its multilingual mAP on the reported corpus, so the
    table shows beside the model whether training beat the fix (before: on the zero-shot model)."""
    return tuple(f"{m}/map/multi" for m in methods)


def check_baselines(options: Mapping[str, Any]) -> list[str]:
    """`eval.baselines` checked before anything loads; returns the methods to score."""
    methods = list(options["methods"] or [])
    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise BatchmixError(f"eval.baselines.methods has unknown {unknown}; choose from {sorted(BASELINES)} (or [] for none)")
    if len(set(methods)) != len(methods):
        raise BatchmixError(f"eval.baselines.methods={methods} names a method twice; name each once")
    if methods and int(options["fit_ids"]) < 1:
        raise BatchmixError(f"eval.baselines.fit_ids={options['fit_ids']} must be >= 1 (question ids to fit on); or eval.baselines.methods=[]")
    if "lir" in methods and int(options["lir_rank"]) < 1:
        raise BatchmixError(f"eval.baselines.lir_rank={options['lir_rank']} must be >= 1 (directions LIR removes per language)")
    return methods


def fit_corpus(train: LAReQACorpus, n_ids: int, seed: int = FIT_SEED) -> LAReQACorpus:
    """`n_ids` question ids of `train` (all if fewer), each with its question and answer sentence in
    every language holding it; candidates are those answer sentences only, each once."""
    all_ids = sorted({qid for ls in train.languages.values() for qid in ls.question_ids})
    chosen = set(random.Random(seed).sample(all_ids, min(n_ids, len(all_ids))))
    languages = {}
    for lang, ls in train.languages.items():
        keep = [i for i, qid in enumerate(ls.question_ids) if qid in chosen]
        if not keep:
            continue
        answers = sorted({ls.answer_index[i] for i in keep})
        row = {a: n for n, a in enumerate(answers)}
        languages[lang] = LanguageSet(
            lang=lang,
            question_ids=[ls.question_ids[i] for i in keep],
            questions=[ls.questions[i] for i in keep],
            answer_index=[row[ls.answer_index[i]] for i in keep],
            question_group=[ls.question_group[i] for i in keep] if ls.question_group else [],
            candidates=[ls.candidates[a] for a in answers],
            candidate_contexts=[ls.candidate_contexts[a] for a in answers] if ls.candidate_contexts else [],
            candidate_group=[ls.candidate_group[a] for a in answers] if ls.candidate_group else [],
        )
    return LAReQACorpus(name=f"{train.name} (baseline fit)", languages=languages)


def fit_baselines(methods: list[str], options: Mapping[str, Any], sample: FitSample) -> list[Baseline]:
    """Each method built from `options` and fitted on `sample` (normalised again first: a model with
    `normalize: false` gives raw rows)."""
    sample = FitSample(sample.corpus, _normalised(sample.queries), _normalised(sample.candidates))
    fitted = []
    for method in methods:
        fix = BASELINES[method](options)
        fix.fit(sample)
        fitted.append(fix)
    return fitted


def baseline_metrics(fitted: list[Baseline], corpus: LAReQACorpus, queries: Embeddings, candidates: Embeddings) -> dict[str, float]:
    """`<method>/<metric>` for every fitted fix that covers `corpus`'s languages (aggregates only)."""
    queries, candidates = _normalised(queries), _normalised(candidates)
    out: dict[str, float] = {}
    for fix in fitted:
        missing = fix.uncovered(corpus.langs)
        if missing:
            log.warning("eval.baselines: %s not scored on %s: its fit has no %s text", fix.name, corpus.name, missing)
            continue
        q, c = fix.transform(queries, candidates)
        scores = evaluate_embeddings(corpus, q, c, progress=False)
        out.update({f"{fix.name}/{k}": v for k, v in scores.items() if k.count("/") == 1 and not k.startswith("n_skipped")})
    return out


def _normalised(side: Embeddings) -> Embeddings:
    return {lang: renormalise(rows.float()) for lang, rows in side.items()}
