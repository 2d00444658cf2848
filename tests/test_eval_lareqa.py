"""batchmix.eval.scoring against a plain-Python + ranx reference of every LAReQA setting."""

import math
import random
import time

import numpy as np
import pytest
import ranx
import torch
from scipy import stats

from batchmix.data.corpus import LanguageSet, LAReQACorpus
from batchmix.core.errors import BatchmixError
from batchmix.eval.scoring import candidate_texts, check_candidates, evaluate_embeddings
from batchmix.eval.metrics import metric_names
from embeddings import XQUAD_R_CANDIDATES, bag_of_trigrams, random_xquad_sized, trigram_xquad_slice

pytestmark = pytest.mark.filterwarnings("ignore:unsafe cast")


# ----------------------------------------------------------------------------- reference


def _ranx_means(qrels: dict, run: dict) -> dict[str, float]:
    """Per-query ranx scores of every metric, averaged over the queries of one setting."""
    run = ranx.Run(run)
    ranx.evaluate(ranx.Qrels(qrels), run, list(metric_names()), return_mean=False)
    return {m: float(np.mean([run.scores[m][q] for q in qrels])) for m in metric_names()}


def reference_metrics(corpus: LAReQACorpus, q_emb: dict, c_emb: dict) -> dict[str, float]:
    """Independent LAReQA evaluation: relevance from id lookups, rankings by Python sorting, metrics by ranx."""
    langs = sorted(corpus.languages)
    answer = {lang: dict(zip(ls.question_ids, ls.answer_index)) for lang, ls in corpus.languages.items()}
    pool = [(lang, i) for lang in langs for i in range(len(corpus.languages[lang].candidates))]
    pool_emb = np.concatenate([c_emb[lang].double().numpy() for lang in langs])

    multi_qrels, multi_run = {lang: {} for lang in langs}, {lang: {} for lang in langs}
    pair_qrels = {(x, y): {} for x in langs for y in langs}
    pair_run = {(x, y): {} for x in langs for y in langs}
    skipped = {(x, y): 0 for x in langs for y in langs if x != y}
    distance, own_first = {lang: [] for lang in langs}, {lang: [] for lang in langs}
    for x in langs:
        for n, qid in enumerate(corpus.languages[x].question_ids):
            scores = pool_emb @ q_emb[x][n].double().numpy()
            gaps = np.diff(np.sort(scores))
            assert gaps.min() > 1e-12, "tied scores: ranx orders ties its own way; change the seed"
            key = f"{x}/{qid}"
            relevant = {y: f"{y}:{answer[y][qid]}" for y in langs if qid in answer[y]}
            multi_qrels[x][key] = {doc: 1 for doc in relevant.values()}
            multi_run[x][key] = {f"{lang}:{i}": float(s) for (lang, i), s in zip(pool, scores)}
            for y in langs:
                if y not in relevant:
                    skipped[(x, y)] += 1
                    continue
                pair_qrels[(x, y)][key] = {relevant[y]: 1}
                pair_run[(x, y)][key] = {d: s for d, s in multi_run[x][key].items() if d.startswith(f"{y}:")}
            if len(relevant) >= 2:
                order = sorted(range(len(pool)), key=lambda j: -scores[j])
                position = {f"{pool[j][0]}:{pool[j][1]}": r + 1 for r, j in enumerate(order)}
                ranks = {y: position[doc] for y, doc in relevant.items()}
                distance[x].append(max(ranks.values()) - min(ranks.values()))
                own_first[x].append(all(ranks[x] < r for y, r in ranks.items() if y != x))

    out: dict[str, float] = {}
    all_qrels, all_run = {}, {}
    for x in langs:
        for m, v in _ranx_means(multi_qrels[x], multi_run[x]).items():
            out[f"{m}/multi/{x}"] = v
        all_qrels.update(multi_qrels[x])
        all_run.update(multi_run[x])
    for m, v in _ranx_means(all_qrels, all_run).items():
        out[f"{m}/multi"] = v
    mono = [_ranx_means(pair_qrels[(x, x)], pair_run[(x, x)]) for x in langs]
    for x, means in zip(langs, mono):
        for m, v in means.items():
            out[f"{m}/mono/{x}"] = v
    cross = []
    for (x, y), n in skipped.items():
        out[f"n_skipped/cross/{x}-{y}"] = float(n)
        if pair_qrels[(x, y)]:
            cross.append(_ranx_means(pair_qrels[(x, y)], pair_run[(x, y)]))
            for m, v in cross[-1].items():
                out[f"{m}/cross/{x}-{y}"] = v
    out["n_skipped/cross"] = float(sum(skipped.values()))
    for m in metric_names():
        out[f"{m}/mono"] = float(np.mean([means[m] for means in mono]))
        out[f"{m}/cross"] = float(np.mean([means[m] for means in cross]))
    biased = [x for x in langs if distance[x]]
    for x in biased:
        out[f"bias/rank_distance/{x}"] = float(np.mean(distance[x]))
        out[f"bias/own_lang_first/{x}"] = float(np.mean(own_first[x]))
    out["bias/rank_distance"] = float(np.mean([out[f"bias/rank_distance/{x}"] for x in biased]))
    out["bias/own_lang_first"] = float(np.mean([out[f"bias/own_lang_first/{x}"] for x in biased]))
    # Mean rank correlation (Yang, Jiang and Baldwin 2025): per id asked in >= 2 languages, scipy's
    # Spearman between the pool scores of its parallel questions, averaged over the other languages.
    rc = {lang: [] for lang in langs}
    ids = sorted({qid for ls in corpus.languages.values() for qid in ls.question_ids})
    for qid in ids:
        members = [(x, corpus.languages[x].question_ids.index(qid)) for x in langs if qid in corpus.languages[x].question_ids]
        if len(members) < 2:
            continue
        scores = np.stack([pool_emb @ q_emb[x][n].double().numpy() for x, n in members])
        for a, (x, _) in enumerate(members):
            rc[x].append(np.mean([stats.spearmanr(scores[a], scores[b]).statistic for b in range(len(members)) if b != a]))
    parallel = [x for x in langs if rc[x]]
    for x in parallel:
        out[f"bias/mrc/{x}"] = float(np.mean(rc[x]))
    if parallel:
        out["bias/mrc"] = float(np.mean([out[f"bias/mrc/{x}"] for x in parallel]))
    return out


def assert_same_metrics(ours: dict[str, float], expected: dict[str, float]) -> None:
    assert sorted(ours) == sorted(expected)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


# ----------------------------------------------------------------------------- toy corpora

# MLQA-R-like: ids exist in 1-3 of 3 languages, so relevance sets vary in size.
OVERLAPPING = {
    "ar": ["i0", "i1", "i2", "i3"],
    "de": ["i0", "i1", "i4", "i5", "i6"],
    "en": ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"],  # i7: English only
}
# ar and de share no id: the ar-de / de-ar cross settings have no answerable question at all.
DISJOINT = {
    "ar": ["i0", "i1", "i2"],
    "de": ["i3", "i4", "i5", "i6"],
    "en": ["i0", "i1", "i2", "i3", "i4", "i5", "i7"],
}


def toy_corpus(layout: dict[str, list[str]], seed: int, dim: int = 48, distractors: int = 12):
    """A corpus with topic-structured random embeddings (answers near their question, plus a
    language component so cross-lingual answers rank lower) and shuffled candidate order."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    ids = sorted({qid for qids in layout.values() for qid in qids})
    f64 = dict(generator=gen, dtype=torch.float64)  # float64 end to end: the reference ranks in float64 too
    topic = {qid: torch.randn(dim, **f64) for qid in ids}
    lang_vec = {lang: torch.randn(dim, **f64) for lang in layout}

    def noisy(base: torch.Tensor, lang: str) -> torch.Tensor:
        v = base + 0.9 * torch.randn(dim, **f64) + 0.6 * lang_vec[lang]
        return torch.nn.functional.normalize(v, dim=0)

    languages, q_emb, c_emb = {}, {}, {}
    for lang, qids in layout.items():
        # The last two questions share one answer sentence (as MLQA questions on one sentence do).
        answer_vecs = [noisy(topic[qid], lang) for qid in qids[:-1]]
        n_cand = len(answer_vecs) + distractors
        cand = [None] * n_cand
        slots = list(range(n_cand))
        rng.shuffle(slots)
        answer_index = []
        for k, vec in enumerate(answer_vecs):
            cand[slots[k]] = vec
        for k in range(len(qids)):
            answer_index.append(slots[min(k, len(answer_vecs) - 1)])
        for s in slots[len(answer_vecs) :]:
            hard = topic[ids[rng.randrange(len(ids))]] * 0.5
            cand[s] = noisy(hard, lang)
        languages[lang] = LanguageSet(
            lang=lang,
            question_ids=list(qids),
            questions=[f"{lang} question {qid}" for qid in qids],
            answer_index=answer_index,
            question_group=[0] * len(qids),
            candidates=[f"{lang} sentence {i}" for i in range(n_cand)],
            candidate_contexts=[f"{lang} paragraph {i // 4}" for i in range(n_cand)],
            candidate_group=[0] * n_cand,
        )
        q_emb[lang] = torch.stack([noisy(topic[qid], lang) for qid in qids])
        c_emb[lang] = torch.stack(cand)
    corpus = LAReQACorpus("toy", {lang: languages[lang] for lang in sorted(languages)})
    return corpus, q_emb, c_emb


# ----------------------------------------------------------------------------- tests


@pytest.mark.slow
@pytest.mark.parametrize("layout", [OVERLAPPING, DISJOINT], ids=["overlapping", "disjoint"])
@pytest.mark.parametrize("seed", [0, 1])
def test_toy_corpus_matches_reference(layout, seed):
    corpus, q_emb, c_emb = toy_corpus(layout, seed)
    ours = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    assert_same_metrics(ours, reference_metrics(corpus, q_emb, c_emb))
    # The toy must exercise non-trivial rankings for the comparison to mean something.
    assert 0.05 < ours["map/multi"] < 0.95 and ours["recall@1/mono"] > 0


def test_disjoint_pairs_are_skipped_and_counted():
    corpus, q_emb, c_emb = toy_corpus(DISJOINT, 0)
    out = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    assert "map/cross/ar-de" not in out and "map/cross/de-ar" not in out
    assert out["n_skipped/cross/ar-de"] == 3 and out["n_skipped/cross/de-ar"] == 4
    assert out["n_skipped/cross/en-ar"] == 4  # i3, i4, i5, i7 have no Arabic answer
    pairs = [k for k in out if k.startswith("map/cross/")]
    assert sorted(pairs) == ["map/cross/ar-en", "map/cross/de-en", "map/cross/en-ar", "map/cross/en-de"]
    assert out["map/cross"] == pytest.approx(np.mean([out[k] for k in pairs]))


def test_key_set():
    corpus, q_emb, c_emb = toy_corpus(OVERLAPPING, 0)
    out = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    langs = ["ar", "de", "en"]
    suffixes = ["multi", "mono", "cross"] + [f"multi/{l}" for l in langs] + [f"mono/{l}" for l in langs]
    suffixes += [f"cross/{x}-{y}" for x in langs for y in langs if x != y]
    expected = {f"{m}/{s}" for m in metric_names() for s in suffixes}
    expected |= {f"n_skipped/cross/{x}-{y}" for x in langs for y in langs if x != y} | {"n_skipped/cross"}
    expected |= {f"bias/{b}{s}" for b in ("rank_distance", "own_lang_first", "mrc") for s in ["", "/ar", "/de", "/en"]}
    assert set(out) == expected
    assert all(isinstance(v, float) for v in out.values())


def _language_biased_corpus():
    """2 languages x 3 candidates; every query prefers its own language over the right answer elsewhere.

    Embedding axes: [lang a, lang b, id x, id y, id z]. Question x in a = (1, 0, .5, 0, 0): its own
    answer scores 1.5, the other a-candidates 1.0, its b-answer 0.5, other b-candidates 0.
    """

    def e(lang: str, id_: int | None, w: float = 1.0) -> list[float]:
        v = [1.0, 0.0] if lang == "a" else [0.0, 1.0]
        ids = [0.0, 0.0, 0.0]
        if id_ is not None:
            ids[id_] = w
        return v + ids

    sets, q_emb, c_emb = {}, {}, {}
    for lang in ("a", "b"):
        sets[lang] = LanguageSet(
            lang=lang, question_ids=["x", "y"], questions=["qx", "qy"], answer_index=[0, 1],
            candidates=["sx", "sy", "sz"], candidate_contexts=["p", "p", "p"],
        )
        q_emb[lang] = torch.tensor([e(lang, 0, 0.5), e(lang, 1, 0.5)])
        c_emb[lang] = torch.tensor([e(lang, 0), e(lang, 1), e(lang, 2)])
    return LAReQACorpus("biased", sets), q_emb, c_emb


def test_language_biased_ranking_by_hand():
    corpus, q_emb, c_emb = _language_biased_corpus()
    out = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    # Multi: own answer rank 1, other-language answer rank 4 (after all 3 own-language candidates).
    assert out["map/multi"] == pytest.approx((1 / 1 + 2 / 4) / 2)
    assert out["mrr/multi"] == 1.0
    assert out["recall@1/multi"] == 0.5 and out["recall@5/multi"] == 1.0
    assert out["ndcg@10/multi"] == pytest.approx((1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert out["bias/rank_distance"] == 3.0 and out["bias/own_lang_first"] == 1.0
    # Within one language block the right answer always wins.
    for key in ("map/mono", "map/cross", "map/cross/a-b", "recall@1/cross/b-a", "ndcg@10/mono/a"):
        assert out[key] == 1.0, key
    assert out["n_skipped/cross"] == 0.0


def test_language_agnostic_ranking_has_minimal_rank_distance():
    corpus, q_emb, c_emb = _language_biased_corpus()
    for lang in ("a", "b"):  # drop the language axes: answers in both languages now score alike
        q_emb[lang][:, :2] = 0
        c_emb[lang][:, :2] = 0
        c_emb[lang][:, 2:] += torch.tensor([0.01, 0.02, 0.0]) if lang == "a" else 0  # a answers first
    out = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    assert out["map/multi"] == 1.0
    assert out["bias/rank_distance"] == 1.0  # two answers at ranks 1 and 2
    assert out["bias/own_lang_first/a"] == 1.0 and out["bias/own_lang_first/b"] == 0.0


def test_answers_tied_across_languages():
    """Identical answers in both languages tie: both sit at pessimistic rank 2, neither is 'first'."""
    corpus, q_emb, c_emb = _language_biased_corpus()
    for lang in ("a", "b"):
        q_emb[lang][:, :2] = 0
        c_emb[lang][:, :2] = 0
    out = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    assert out["bias/rank_distance"] == 0.0 and out["bias/own_lang_first"] == 0.0
    assert out["map/multi"] == 1.0 and out["mrr/multi"] == 0.5 and out["recall@1/multi"] == 0.0


def test_real_xquad_r_slice_matches_reference(xquad_root):
    corpus, q_emb, c_emb = trigram_xquad_slice(xquad_root)
    ours = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    assert_same_metrics(ours, reference_metrics(corpus, q_emb, c_emb))
    # Trigram overlap works within a language and hardly across: a miswired relevance would break this.
    assert ours["map/mono"] > 0.3 > ours["map/cross"]
    assert ours["bias/own_lang_first"] > 0.8 and ours["n_skipped/cross"] == 0.0


def test_candidate_texts_are_the_sentence_or_the_sentence_then_its_paragraph():
    corpus, _, _ = toy_corpus(OVERLAPPING, 0)
    en = corpus.languages["en"]
    assert candidate_texts(en, "sentence") == en.candidates
    assert candidate_texts(en, "context") == [f"{s} {c}" for s, c in zip(en.candidates, en.candidate_contexts)]
    q_emb = {lang: bag_of_trigrams(ls.questions) for lang, ls in corpus.languages.items()}
    scores = {mode: evaluate_embeddings(corpus, q_emb, {lang: bag_of_trigrams(candidate_texts(ls, mode)) for lang, ls in corpus.languages.items()},
                                        progress=False) for mode in ("sentence", "context")}
    assert scores["sentence"] != scores["context"]


def test_bad_inputs_raise_one_line_errors():
    corpus, q_emb, c_emb = toy_corpus(OVERLAPPING, 0)
    cases = [
        ({**q_emb, "de": q_emb["de"][:-1]}, c_emb, "q_emb['de'] has shape"),
        ({k: v for k, v in q_emb.items() if k != "ar"}, c_emb, "no embeddings for language(s) ['ar']"),
        (q_emb, {**c_emb, "en": c_emb["en"] * float("nan")}, "NaN"),
        (q_emb, {k: v[:, :10] for k, v in c_emb.items()}, "width"),
    ]
    for q, c, fragment in cases:
        with pytest.raises(BatchmixError) as err:
            evaluate_embeddings(corpus, q, c, progress=False)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BatchmixError, match="eval.candidates='paragraph'"):
        check_candidates("paragraph")
    corpus.languages["de"].candidate_contexts = []
    with pytest.raises(BatchmixError, match="candidate_mode='context'"):
        candidate_texts(corpus.languages["de"], "context")
    corpus.languages["de"].answer_index[0] = 999
    with pytest.raises(BatchmixError, match="answer_index 999"):
        evaluate_embeddings(corpus, q_emb, c_emb, progress=False)


@pytest.mark.slow
def test_full_xquad_r_sized_random_embeddings_are_fast():
    """11 languages x 1190 questions x ~1200 candidates, D=384 (the real XQuAD-R shape)."""
    sizes = XQUAD_R_CANDIDATES
    corpus, q_emb, c_emb = random_xquad_sized([f"q{i}" for i in range(1190)])
    start = time.perf_counter()
    out = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    assert time.perf_counter() - start < 60
    assert len([k for k in out if k.startswith("map/cross/")]) == 110
    # Random embeddings: mono MRR ~ H(n)/n, pool rank spread ~ a large fraction of the 13k pool.
    assert out["mrr/mono"] == pytest.approx(np.mean([sum(1 / r for r in range(1, n + 1)) / n for n in sizes.values()]), rel=0.15)
    assert 8000 < out["bias/rank_distance"] < 13000
