"""Article-level splits: allocation, determinism, disjointness, language independence, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchmix.data.corpus import LanguageSet, LAReQACorpus
from batchmix.data.lareqa import load_lareqa
from batchmix.data.split import allocate_group_counts, split_by_article
from batchmix.core.errors import BatchmixError


@pytest.fixture(scope="module")
def xquad(xquad_root) -> LAReQACorpus:
    """The real XQuAD-R corpus (`xquad_root` from conftest skips when the data is absent)."""
    return load_lareqa(xquad_root)


def synthetic(n_groups: int, langs=("de", "en")) -> LAReQACorpus:
    """`n_groups` articles, each with 2 questions and 3 candidate sentences in every language."""
    sets = {}
    for lang in langs:
        ls = LanguageSet(lang=lang)
        for g in range(n_groups):
            context = f"{lang} paragraph {g}"
            for k in range(3):
                ls.candidates.append(f"{lang} sentence {g}.{k}")
                ls.candidate_contexts.append(context)
                ls.candidate_group.append(g)
            for k in range(2):
                ls.question_ids.append(f"q{g}.{k}")
                ls.questions.append(f"{lang} question {g}.{k}?")
                ls.answer_index.append(3 * g + k)
                ls.question_group.append(g)
        sets[lang] = ls
    return LAReQACorpus(name="toy", languages=sets)


def assert_disjoint(splits: dict[str, LAReQACorpus]) -> None:
    for lang in next(iter(splits.values())).langs:
        seen: dict[str, set] = {"ids": set(), "contexts": set(), "candidates": set(), "groups": set()}
        for split in splits.values():
            ls = split.languages[lang]
            items = {
                "ids": set(ls.question_ids),
                "contexts": set(ls.candidate_contexts),
                # a candidate is a sentence of a paragraph; identical boilerplate text
                # ("[citation needed]") in two different articles is two candidates
                "candidates": set(zip(ls.candidate_contexts, ls.candidates)),
                "groups": set(ls.question_group) | set(ls.candidate_group),
            }
            for kind, values in items.items():
                assert not (seen[kind] & values), (lang, kind)
                seen[kind] |= values


# ---------------------------------------------------------------- allocation


def test_allocation_largest_remainder():
    assert allocate_group_counts(48, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 38, "val": 5, "test": 5}
    assert allocate_group_counts(10, {"a": 0.55, "b": 0.45}) == {"a": 6, "b": 4}  # 5.5 vs 4.5: tie keeps order
    assert allocate_group_counts(7, {"a": 0.5, "b": 0.5, "c": 0.0}) == {"a": 4, "b": 3, "c": 0}


def test_allocation_gives_every_positive_split_a_group():
    # quotas 2.4 / 0.3 / 0.3 would round to 3 / 0 / 0
    assert allocate_group_counts(3, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 1, "val": 1, "test": 1}
    assert allocate_group_counts(4, {"train": 0.98, "test": 0.02}) == {"train": 3, "test": 1}


@given(
    n=st.integers(1, 500),
    weights=st.lists(st.integers(0, 20), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
)
def test_allocation_properties(n, weights):
    fractions = {f"s{i}": w / sum(weights) for i, w in enumerate(weights)}
    positive = [k for k, f in fractions.items() if f > 0]
    if n < len(positive):
        with pytest.raises(BatchmixError, match="non-empty splits"):
            allocate_group_counts(n, fractions)
        return
    counts = allocate_group_counts(n, fractions)
    assert list(counts) == list(fractions)
    assert sum(counts.values()) == n
    assert all(counts[k] >= 1 for k in positive)
    assert all(counts[k] == 0 for k in fractions if fractions[k] == 0)
    if all(fractions[k] * n >= 1 for k in positive):
        assert all(abs(counts[k] - fractions[k] * n) < 1 for k in fractions)


@pytest.mark.parametrize(
    ("fractions", "pattern"),
    [
        ({"train": 0.9, "val": 0.2}, r"train=0.9, val=0.2 sum to 1.1; they must sum to 1"),
        ({"train": 1.2, "val": -0.2}, r"split fraction val=-0.2 must be a finite number >= 0"),
        ({"train": "lots"}, r"split fraction train='lots' is not a number"),
        ({"train": float("nan"), "val": 1.0}, r"split fraction train=nan"),
        ({}, r"split fractions are empty"),
    ],
)
def test_bad_fractions_are_named(fractions, pattern):
    with pytest.raises(BatchmixError, match=pattern):
        split_by_article(synthetic(10), fractions)


def test_more_splits_than_groups_is_an_error_with_the_fix():
    with pytest.raises(BatchmixError, match=r"cannot split 2 article group\(s\) into 3 non-empty splits.*fraction to 0"):
        split_by_article(synthetic(2))


# ---------------------------------------------------------------- splitting


def test_split_synthetic_is_deterministic_disjoint_and_complete():
    corpus = synthetic(20)
    splits = split_by_article(corpus, seed=3)
    assert list(splits) == ["train", "val", "test"]
    assert [len(s.groups) for s in splits.values()] == [16, 2, 2]
    assert [s.name for s in splits.values()] == ["toy/train", "toy/val", "toy/test"]
    assert_disjoint(splits)
    assert sorted(g for s in splits.values() for g in s.groups) == corpus.groups
    again = split_by_article(synthetic(20), seed=3)
    assert again == splits
    other = split_by_article(corpus, seed=4)
    assert other["test"].groups != splits["test"].groups
    # subsets re-index answers correctly
    for split in splits.values():
        for ls in split.languages.values():
            for qid, a in zip(ls.question_ids, ls.answer_index):
                g, k = qid[1:].split(".")
                assert ls.candidates[a] == f"{ls.lang} sentence {g}.{k}"


def test_zero_fraction_split_is_empty():
    splits = split_by_article(synthetic(5), {"train": 1.0, "val": 0.0})
    assert splits["train"].groups == list(range(5))
    assert splits["val"].groups == [] and all(not ls.question_ids for ls in splits["val"].languages.values())


def test_split_xquad(xquad):
    splits = split_by_article(xquad, seed=0)
    assert [len(s.groups) for s in splits.values()] == [38, 5, 5]
    assert_disjoint(splits)
    for lang in xquad.langs:
        assert sum(len(s.languages[lang].question_ids) for s in splits.values()) == 1190
        assert sum(len(s.languages[lang].candidates) for s in splits.values()) == len(xquad.languages[lang].candidates)
    # language independent: every language has the same question ids in a split
    for split in splits.values():
        ids = {lang: set(ls.question_ids) for lang, ls in split.languages.items()}
        assert all(v == ids["en"] for v in ids.values())
        groups = split.training_groups()
        assert len(groups) == len(ids["en"]) and all(len(p) == 11 for p in groups.pairs)
        for pairs in groups.pairs[:20]:
            for lang, pair in pairs.items():
                assert pair.positive in split.languages[lang].candidates
    sizes = [len(s.training_groups()) for s in splits.values()]
    assert sum(sizes) == 1190 and sizes[0] > sizes[1] > 0 and sizes[2] > 0
    assert split_by_article(xquad, seed=0) == splits
    assert split_by_article(xquad, seed=1)["test"].groups != splits["test"].groups
