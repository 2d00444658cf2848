"""Mean rank correlation (batchmix.eval.rank_correlation) on hand-computed rankings and against scipy."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from batchmix.data.corpus import LAReQACorpus, LanguageSet
from batchmix.eval.rank_correlation import mean_rank_correlation, spearman_matrix

# Pool = 4 candidates on the axes of R^4 (the identity), so a question's embedding is its score vector.
POOL = torch.eye(4, dtype=torch.float64)
SCORES = {  # question id -> language -> scores of the 4 candidates
    "q1": {"en": [0.9, 0.1, 0.5, 0.3], "de": [0.8, 0.2, 0.1, 0.6], "fr": [0.9, 0.1, 0.5, 0.3]},
    "q2": {"en": [0.4, 0.3, 0.2, 0.1]},  # asked in one language only: no parallel question, left out
}


def corpus(langs: list[str]) -> tuple[LAReQACorpus, dict[str, torch.Tensor]]:
    sets, q_emb = {}, {}
    for lang in langs:
        ids = [qid for qid, by_lang in SCORES.items() if lang in by_lang]
        sets[lang] = LanguageSet(lang=lang, question_ids=ids, questions=ids, answer_index=[0] * len(ids),
                                 candidates=["c"], candidate_contexts=["p"])
        q_emb[lang] = torch.tensor([SCORES[qid][lang] for qid in ids], dtype=torch.float64)
    return LAReQACorpus("toy", sets), q_emb


def test_two_languages_by_hand():
    # en ranks (ascending positions) [3, 0, 2, 1], de [3, 1, 0, 2]: d = (0, -1, 2, -1), sum d^2 = 6,
    # Spearman = 1 - 6 * 6 / (4 * (16 - 1)) = 0.4 for both languages.
    c, q = corpus(["en", "de"])
    out = mean_rank_correlation(c, q, POOL)
    assert out == pytest.approx({"bias/mrc/en": 0.4, "bias/mrc/de": 0.4, "bias/mrc": 0.4})


def test_three_languages_average_over_the_other_languages():
    # fr ranks like en (rho 1) and like de as en does (0.4): RC(en) = RC(fr) = (1 + 0.4) / 2, RC(de) = 0.4.
    c, q = corpus(["en", "de", "fr"])
    out = mean_rank_correlation(c, q, POOL)
    assert out["bias/mrc/en"] == pytest.approx(0.7) and out["bias/mrc/fr"] == pytest.approx(0.7)
    assert out["bias/mrc/de"] == pytest.approx(0.4) and out["bias/mrc"] == pytest.approx(0.6)


def test_no_parallel_question_gives_no_key():
    c, q = corpus(["en"])
    assert mean_rank_correlation(c, q, POOL) == {}


def test_spearman_matrix_equals_scipy_without_ties():
    scores = torch.randn(5, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = stats.spearmanr(scores.numpy(), axis=1).statistic
    assert torch.allclose(spearman_matrix(scores), torch.as_tensor(expected), atol=1e-12)


def test_mrc_improves_upwards_for_checkpoints_pruning_and_optuna():
    from batchmix.report.optuna_trials import guess_direction
    from batchmix.eval.selection import mode

    assert mode("val/bias/mrc") == "max" and mode("val/bias/mrc/de") == "max"
    assert mode("val/bias/rank_distance") == "min" and mode("val/bias/own_lang_first") == "min"
    assert guess_direction("val/bias/mrc") == "maximize" and guess_direction("val/bias/rank_distance") == "minimize"
