import itertools
from collections import Counter

import pytest

from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio
from batchmix.mixing.sampler import HybridBatchSampler

XQ_LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]


def parallel(n=200, langs=XQ_LANGS):
    return [list(langs) for _ in range(n)]


def variable(n=300):
    """MLQA-R-like: each id exists in 2-4 of 7 languages (plus a few single-language ids)."""
    langs = ["ar", "de", "en", "es", "hi", "vi", "zh"]
    out = []
    for i in range(n):
        k = 1 if i % 37 == 0 else 2 + i % 3
        out.append([langs[(i * 3 + j * (1 + i % 5)) % 7] for j in range(k)])
    return out


RATIOS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.2, 0.5, 0.3), (1 / 3, 1 / 3, 1 / 3), (0.29, 0.71, 0), (0.1, 0, 0.9)]


@pytest.mark.parametrize("shares", RATIOS)
@pytest.mark.parametrize("n_batches", [1, 7, 10, 33])
def test_exact_per_epoch_proportions(shares, n_batches):
    ratio = Ratio(*shares)
    s = HybridBatchSampler(parallel(), 8, ratio, batches_per_epoch=n_batches, seed=3)
    for epoch in range(2):
        counts = Counter(batch[0].batch_type for batch in s.plan_epoch(epoch))
        assert {k: counts.get(k, 0) for k in ("mono", "cross", "multi")} == ratio.counts(n_batches)


@pytest.mark.parametrize("groups", [parallel(), variable()], ids=["parallel", "variable"])
@pytest.mark.parametrize("mono_mode", ["batch", "pair"])
def test_language_constraints_and_no_duplicate_ids(groups, mono_mode):
    s = HybridBatchSampler(groups, 16, Ratio(0.4, 0.3, 0.3), batches_per_epoch=60, mono_mode=mono_mode, seed=0)
    seen_multi_pairs = set()
    for batch in s.plan_epoch(0):
        assert len(batch) == 16
        types = {ref.batch_type for ref in batch}
        assert len(types) == 1, "a batch has exactly one type"
        ids = [ref.group for ref in batch]
        assert len(set(ids)) == len(ids), "no id twice in a batch"
        for ref in batch:
            assert ref.query_lang in groups[ref.group] and ref.positive_lang in groups[ref.group]
        t = types.pop()
        if t == "mono":
            assert all(ref.query_lang == ref.positive_lang for ref in batch)
            if mono_mode == "batch":
                assert len({ref.query_lang for ref in batch}) == 1
        elif t == "cross":
            assert all(ref.query_lang != ref.positive_lang for ref in batch)
        else:
            seen_multi_pairs.update((ref.query_lang == ref.positive_lang) for ref in batch)
    # multi draws the two languages independently: both same- and different-language pairs occur.
    assert seen_multi_pairs == {True, False}


def test_mono_pair_mode_mixes_languages_within_batch():
    s = HybridBatchSampler(parallel(), 32, Ratio(1, 0, 0), batches_per_epoch=5, mono_mode="pair", seed=1)
    assert any(len({r.query_lang for r in b}) > 1 for b in s.plan_epoch(0))


def test_epoch_covers_ids_evenly():
    n, bs = 160, 16
    s = HybridBatchSampler(parallel(n), bs, Ratio(0.5, 0.5, 0), seed=0)
    assert len(s) == n // bs
    used = Counter(ref.group for b in s.plan_epoch(0) for ref in b)
    assert set(used) == set(range(n)) and set(used.values()) == {1}


def test_deterministic_for_seed_and_differs_across_seeds_and_epochs():
    a = HybridBatchSampler(variable(), 8, Ratio(0.2, 0.5, 0.3), batches_per_epoch=20, seed=7)
    b = HybridBatchSampler(variable(), 8, Ratio(0.2, 0.5, 0.3), batches_per_epoch=20, seed=7)
    c = HybridBatchSampler(variable(), 8, Ratio(0.2, 0.5, 0.3), batches_per_epoch=20, seed=8)
    assert list(a) == list(b)
    assert a.plan_epoch(0) != c.plan_epoch(0)
    assert a.plan_epoch(0) != a.plan_epoch(1)


def test_iteration_advances_epochs_like_a_plain_sampler():
    s = HybridBatchSampler(parallel(), 8, Ratio(0.5, 0.5, 0), batches_per_epoch=4, seed=0)
    first, second = list(s), list(s)
    assert first == s.plan_epoch(0) and second == s.plan_epoch(1)


@pytest.mark.parametrize("stop_after", [0, 1, 5, 9])
def test_resume_continues_the_same_sequence(stop_after):
    ratio = Ratio(0.3, 0.4, 0.3)
    ref = HybridBatchSampler(variable(), 8, ratio, batches_per_epoch=10, seed=11)
    uninterrupted = list(itertools.chain(ref, ref))  # two epochs

    run = HybridBatchSampler(variable(), 8, ratio, batches_per_epoch=10, seed=11)
    got = list(itertools.islice(iter(run), stop_after))
    state = run.state_dict()
    assert state == {"seed": 11, "epoch": 0, "position": stop_after}

    resumed = HybridBatchSampler(variable(), 8, ratio, batches_per_epoch=10, seed=11)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # what Lightning does at the start of the resumed epoch
    got += list(resumed)
    resumed.set_epoch(1)
    got += list(resumed)
    assert got == uninterrupted
    assert [b[0].batch_type for b in got] == [b[0].batch_type for b in uninterrupted]


def test_mark_consumed_overrides_prefetch():
    s = HybridBatchSampler(parallel(), 8, Ratio(0.5, 0.5, 0), batches_per_epoch=6, seed=0)
    it = iter(s)
    next(it), next(it), next(it)  # a DataLoader prefetched three batches ...
    s.mark_consumed(0, 0)  # ... but only the first reached the model
    assert s.state_dict()["position"] == 1


def test_resume_with_other_seed_is_refused():
    s = HybridBatchSampler(parallel(), 8, Ratio(1, 0, 0), seed=0)
    with pytest.raises(BatchmixError, match="seed"):
        s.load_state_dict({"seed": 1, "epoch": 0, "position": 3})


def test_cross_with_one_language_is_impossible():
    with pytest.raises(BatchmixError) as err:
        HybridBatchSampler(parallel(50, ["en"]), 8, Ratio(0.5, 0.5, 0))
    msg = str(err.value)
    assert "cross=0.5" in msg and "languages: en" in msg and "ratio.cross=0" in msg


def test_mono_only_with_one_language_is_fine():
    s = HybridBatchSampler(parallel(50, ["en"]), 8, Ratio(1, 0, 0))
    assert all(r.query_lang == "en" for b in s for r in b)


def test_batch_larger_than_ids_is_refused():
    with pytest.raises(BatchmixError, match=r"batch_size=64 .* \(50\)"):
        HybridBatchSampler(parallel(50), 64, Ratio(1, 0, 0))


def test_mono_batch_mode_needs_enough_ids_in_one_language():
    groups = [["en", "de"] if i % 2 else ["es", "zh"] for i in range(20)]  # 10 ids per language
    with pytest.raises(BatchmixError, match="mono_mode=pair"):
        HybridBatchSampler(groups, 12, Ratio(1, 0, 0))
    HybridBatchSampler(groups, 12, Ratio(1, 0, 0), mono_mode="pair")


def test_bad_arguments():
    with pytest.raises(BatchmixError, match="mono_mode"):
        HybridBatchSampler(parallel(), 8, Ratio(1, 0, 0), mono_mode="language")
    with pytest.raises(BatchmixError, match="batch_size"):
        HybridBatchSampler(parallel(), 0, Ratio(1, 0, 0))
    with pytest.raises(BatchmixError, match="batches_per_epoch"):
        HybridBatchSampler(parallel(), 8, Ratio(1, 0, 0), batches_per_epoch=0)


# --- data.sampler.avoid_shared_answers -------------------------------------------------------------
def exclusive_groups(n=200, seed=5):
    """Random symmetric 'share an answer' relation: ~3 partners per id (as XQuAD-R, where 800 of 947
    training ids share one with another in some language)."""
    import random

    rng = random.Random(seed)
    partners = [set() for _ in range(n)]
    for _ in range(3 * n // 2):
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b:
            partners[a].add(b)
            partners[b].add(a)
    return [frozenset(p) for p in partners]


@pytest.mark.parametrize("shares", [(1, 0, 0), (0, 1, 0), (0.2, 0.5, 0.3)])
def test_no_two_queries_of_a_batch_share_an_answer_and_the_counts_hold(shares):
    exclusive = exclusive_groups()
    ratio = Ratio(*shares)
    plain = HybridBatchSampler(parallel(), 16, ratio, batches_per_epoch=30, seed=2)
    s = HybridBatchSampler(parallel(), 16, ratio, batches_per_epoch=30, seed=2, exclusive=exclusive)
    clashes = lambda plan: sum(b.group in exclusive[a.group] for batch in plan for a in batch for b in batch)  # noqa: E731
    assert clashes(plain.plan_epoch(0)) > 0  # the control: drawn blindly, batches do share answers
    for epoch in range(2):
        plan = s.plan_epoch(epoch)
        assert clashes(plan) == 0
        assert all(len({r.group for r in batch}) == 16 for batch in plan)
        counts = Counter(batch[0].batch_type for batch in plan)
        assert {k: counts.get(k, 0) for k in ("mono", "cross", "multi")} == ratio.counts(30)


def test_avoiding_shared_answers_resumes_the_same_sequence():
    exclusive = exclusive_groups()
    make = lambda: HybridBatchSampler(parallel(), 16, Ratio(0.3, 0.4, 0.3), batches_per_epoch=10, seed=11, exclusive=exclusive)  # noqa: E731
    ref = make()
    uninterrupted = list(itertools.chain(ref, ref))
    run = make()
    got = list(itertools.islice(iter(run), 4))
    resumed = make()
    resumed.load_state_dict(run.state_dict())
    resumed.set_epoch(0)
    got += list(resumed)
    resumed.set_epoch(1)
    got += list(resumed)
    assert got == uninterrupted


def test_avoiding_shared_answers_that_leave_too_few_ids_is_refused_in_one_line():
    everyone = [frozenset(set(range(20)) - {i}) for i in range(20)]  # every id shares an answer with every other
    with pytest.raises(BatchmixError, match=r"^data.sampler.avoid_shared_answers=true: at most 1 training ids .*batch_size=4"):
        HybridBatchSampler(parallel(20), 4, Ratio(1, 0, 0), exclusive=everyone)
