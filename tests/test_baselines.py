"""The training-free baselines (batchmix.eval.baselines): each transform against a NumPy derivation of
its paper's formula, the fit sample, and an end-to-end case where removing a language offset restores
a multilingual ranking that the offset had broken."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from batchmix.core.errors import BatchmixError
from batchmix.data.corpus import LAReQACorpus, LanguageSet
from batchmix.eval.baselines import baseline_metrics, check_baselines, fit_baselines, fit_corpus
from batchmix.eval.baselines.base import FitSample
from batchmix.eval.baselines.centring import Centring
from batchmix.eval.baselines.lir import LIR
from batchmix.eval.baselines.shift import Shift
from batchmix.eval.scoring import evaluate_embeddings

OPTIONS = {"methods": ["shift", "lir", "centring"], "fit_ids": 200, "lir_rank": 1, "shift_source": "en"}
rng = np.random.default_rng(0)


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def language_set(lang: str, ids: list[str], answer_index: list[int], n_candidates: int) -> LanguageSet:
    return LanguageSet(lang=lang, question_ids=ids, questions=[f"{lang} q {i}" for i in ids], answer_index=answer_index,
                       candidates=[f"{lang} c {j}" for j in range(n_candidates)], candidate_contexts=[""] * n_candidates)


def sample(langs: dict[str, tuple[list[str], list[int], int]], width: int = 6) -> FitSample:
    corpus = LAReQACorpus("fit", {lang: language_set(lang, *spec) for lang, spec in langs.items()})
    q = {lang: torch.tensor(unit(rng.normal(size=(len(spec[0]), width)))) for lang, spec in langs.items()}
    c = {lang: torch.tensor(unit(rng.normal(size=(spec[2], width)))) for lang, spec in langs.items()}
    return FitSample(corpus, q, c)


def test_centring_subtracts_each_languages_mean_per_tower_then_renormalises():
    fit = sample({"en": (["a", "b", "c"], [0, 1, 2], 3), "de": (["a", "b"], [1, 0], 2)})
    fix = Centring()
    fix.fit(fit)
    q, c = fix.transform(fit.queries, fit.candidates)
    for lang in ("en", "de"):
        expected_q = unit(fit.queries[lang].numpy() - fit.queries[lang].numpy().mean(axis=0))
        expected_c = unit(fit.candidates[lang].numpy() - fit.candidates[lang].numpy().mean(axis=0))
        np.testing.assert_allclose(q[lang].numpy(), expected_q, atol=1e-12)
        np.testing.assert_allclose(c[lang].numpy(), expected_c, atol=1e-12)


def test_shift_offsets_are_mean_differences_of_distinct_parallel_answer_pairs_and_leave_queries():
    # de: ids a and b share answer sentence 0 in de and in en (one pair, not two); c answers with de 1 / en 2;
    # d exists only in de (no en translation: no pair).
    fit = sample({"en": (["a", "b", "c"], [0, 0, 2], 3), "de": (["a", "b", "c", "d"], [0, 0, 1, 1], 2)})
    fix = Shift(source="en")
    fix.fit(fit)
    de, en = fit.candidates["de"].numpy(), fit.candidates["en"].numpy()
    expected = ((de[0] - en[0]) + (de[1] - en[2])) / 2
    np.testing.assert_allclose(fix.offset["de"].numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(fix.offset["en"].numpy(), 0.0, atol=1e-12)
    q, c = fix.transform(fit.queries, fit.candidates)
    assert all(torch.equal(q[lang], fit.queries[lang]) for lang in q)
    np.testing.assert_allclose(c["de"].numpy(), unit(de - expected), atol=1e-12)


def test_shift_without_the_source_language_covers_nothing():
    fix = Shift(source="en")
    fix.fit(sample({"de": (["a"], [0], 1)}))
    assert fix.uncovered(["de"]) == ["de"]


@pytest.mark.parametrize("rank", [1, 2])
def test_lir_projects_out_the_top_right_singular_vectors_of_each_languages_uncentred_matrix(rank):
    fit = sample({"en": (["a", "b", "c", "d"], [0, 1, 2, 3], 5), "de": (["a", "b", "c"], [0, 1, 2], 3)})
    fix = LIR(rank=rank)
    fix.fit(fit)
    q, c = fix.transform(fit.queries, fit.candidates)
    for lang in ("en", "de"):
        matrix = np.concatenate([fit.queries[lang].numpy(), fit.candidates[lang].numpy()])
        top = np.linalg.svd(matrix, full_matrices=False)[2][:rank]
        projector = np.eye(matrix.shape[1]) - top.T @ top
        np.testing.assert_allclose(q[lang].numpy(), unit(fit.queries[lang].numpy() @ projector), atol=1e-10)
        np.testing.assert_allclose(c[lang].numpy(), unit(fit.candidates[lang].numpy() @ projector), atol=1e-10)


def offset_corpus(ids: list[str], meaning: np.ndarray, offsets: dict[str, np.ndarray], name: str) -> tuple[LAReQACorpus, dict, dict]:
    """Each id's question and answer share a meaning vector in every language; each language adds its
    own large offset, so a query's nearest candidates are its own language's, whatever they mean."""
    corpus = LAReQACorpus(name, {lang: language_set(lang, ids, list(range(len(ids))), len(ids)) for lang in offsets})
    q = {lang: torch.tensor(unit(meaning + off)) for lang, off in offsets.items()}
    c = {lang: torch.tensor(unit(meaning + off + 0.01 * rng.normal(size=meaning.shape))) for lang, off in offsets.items()}
    return corpus, q, c


def test_removing_the_language_offset_restores_the_multilingual_ranking():
    width = 8
    offsets = {"en": 3 * np.eye(width)[0], "de": 3 * np.eye(width)[1], "fr": 3 * np.eye(width)[2]}
    semantic = lambda n: np.concatenate([np.zeros((n, 3)), rng.normal(size=(n, width - 3))], axis=1)  # noqa: E731
    fit_c, fit_q, fit_cand = offset_corpus([f"f{i}" for i in range(30)], semantic(30), offsets, "fit")
    test_c, test_q, test_cand = offset_corpus([f"t{i}" for i in range(12)], semantic(12), offsets, "test")
    raw = evaluate_embeddings(test_c, test_q, test_cand, progress=False)
    assert raw["bias/own_lang_first"] == 1.0 and raw["map/multi"] < 0.9  # the offset decides the ranking
    fitted = fit_baselines(["centring", "lir"], OPTIONS, FitSample(fit_c, fit_q, fit_cand))
    out = baseline_metrics(fitted, test_c, test_q, test_cand)
    assert out["centring/map/multi"] > 0.99 and out["lir/map/multi"] > 0.99
    assert not [k for k in out if k.count("/") != 2]  # aggregates only: `<method>/<metric>/<setting>`


def test_a_language_the_fit_never_saw_gets_no_keys_and_a_warning(caplog):
    fit = sample({"en": (["a", "b"], [0, 1], 2)})
    scored = sample({"en": (["x"], [0], 1), "de": (["x"], [0], 1)})
    fitted = fit_baselines(["centring"], OPTIONS, fit)
    with caplog.at_level(logging.WARNING, logger="batchmix"):
        out = baseline_metrics(fitted, scored.corpus, scored.queries, scored.candidates)
    assert out == {} and "['de']" in caplog.text


def test_fit_corpus_keeps_sampled_ids_with_only_their_answer_sentences_the_same_for_every_call():
    train = LAReQACorpus("xquad-r", {
        "en": language_set("en", [f"q{i}" for i in range(10)], [i // 2 for i in range(10)], 8),
        "de": language_set("de", [f"q{i}" for i in range(0, 10, 2)], [0, 1, 2, 3, 4], 6),
    })
    fit = fit_corpus(train, 4)
    assert fit.languages == fit_corpus(train, 4).languages
    ids = set(fit.languages["en"].question_ids)
    assert len(ids) == 4 and set(fit.languages["de"].question_ids) <= ids
    for lang, ls in fit.languages.items():
        source = train.languages[lang]
        for qid, a in zip(ls.question_ids, ls.answer_index):
            assert ls.candidates[a] == source.candidates[source.answer_index[source.question_ids.index(qid)]]
        assert len(ls.candidates) == len(set(ls.candidates)) == len(set(ls.answer_index))
    assert len(fit_corpus(train, 100).languages["en"].question_ids) == 10


@pytest.mark.parametrize("change, message", [
    ({"methods": ["shift", "pca"]}, "unknown ['pca']"),
    ({"methods": ["lir", "lir"]}, "names a method twice"),
    ({"fit_ids": 0}, "fit_ids=0 must be >= 1"),
    ({"lir_rank": 0}, "lir_rank=0 must be >= 1"),
])
def test_bad_options_are_one_line_naming_the_value(change, message):
    with pytest.raises(BatchmixError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_baselines({**OPTIONS, **change})
    assert check_baselines({**OPTIONS, "methods": []}) == []
