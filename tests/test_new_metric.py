"""A new metric is one registration: this file adds precision@5 (relevant items among the top 5, / 5)
without touching any batchmix source file, and checks it is scored in every LAReQA setting (its
multilingual values against ranx's precision@5, an independent implementation), accepted as an
objective while registered (refused otherwise), and written by a real training run. The metric is
unregistered afterwards, so other tests see the built-in ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import ranx
import torch
from hydra import compose, initialize_config_dir

from batchmix.core.errors import BatchmixError
from batchmix.eval.metrics import metric_names, registered
from batchmix.eval.objectives import check_objective
from batchmix.eval.scoring import evaluate_embeddings
from test_eval_lareqa import OVERLAPPING, toy_corpus

NAME = "precision@5"
BUILT_IN = metric_names()


def precision_at_5(ranks: torch.Tensor) -> torch.Tensor:
    """Per query (float64 [Q]): relevant items ranked in the top 5, over 5; NaN without a relevant item."""
    valid = ranks > 0
    found = (valid & (ranks <= 5)).sum(dim=1).double() / 5
    return torch.where(valid.any(dim=1), found, torch.full_like(found, float("nan")))


@pytest.fixture
def precision():
    with registered(NAME, precision_at_5) as name:
        yield name
    assert metric_names() == BUILT_IN


def _ranx_multi(corpus, q_emb, c_emb) -> float:
    """precision@5 of the multilingual setting by ranx: every question against the pooled candidates of
    all languages, relevant = its answer sentence in every language that has its id."""
    langs = sorted(corpus.languages)
    pool = [f"{lang}:{i}" for lang in langs for i in range(len(corpus.languages[lang].candidates))]
    pool_emb = torch.cat([c_emb[lang] for lang in langs]).double().numpy()
    answer = {lang: dict(zip(ls.question_ids, ls.answer_index)) for lang, ls in corpus.languages.items()}
    qrels, run = {}, {}
    for lang in langs:
        for n, qid in enumerate(corpus.languages[lang].question_ids):
            key = f"{lang}/{qid}"
            qrels[key] = {f"{y}:{answer[y][qid]}": 1 for y in langs if qid in answer[y]}
            run[key] = dict(zip(pool, map(float, pool_emb @ q_emb[lang][n].double().numpy())))
    run = ranx.Run(run)
    ranx.evaluate(ranx.Qrels(qrels), run, NAME, return_mean=False)
    return float(np.mean([run.scores[NAME][q] for q in qrels]))


def test_the_new_metric_is_scored_in_every_setting(precision):
    corpus, q_emb, c_emb = toy_corpus(OVERLAPPING, seed=0)
    out = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    langs = sorted(corpus.languages)
    settings = ["multi", "mono", "cross", *(f"multi/{x}" for x in langs), *(f"mono/{x}" for x in langs),
                *(f"cross/{x}-{y}" for x in langs for y in langs if x != y)]
    assert {f"{NAME}/{s}" for s in settings} <= set(out)
    assert out[f"{NAME}/multi"] == pytest.approx(_ranx_multi(corpus, q_emb, c_emb), abs=1e-12)
    # one relevant item per question in the mono setting: precision@5 is recall@5 / 5 there
    assert out[f"{NAME}/mono"] == pytest.approx(out["recall@5/mono"] / 5, abs=1e-12)
    assert 0 < out[f"{NAME}/multi"] < 1


def test_the_new_metric_is_an_objective_only_while_registered():
    with pytest.raises(BatchmixError, match="is not a batchmix metric"):
        check_objective(f"val/{NAME}/multi")
    with registered(NAME, precision_at_5):
        check_objective(f"val/{NAME}/multi")
        with pytest.raises(BatchmixError, match="already registered"):
            with registered(NAME, precision_at_5):
                pass
    with pytest.raises(BatchmixError, match="is not a batchmix metric"):
        check_objective(f"val/{NAME}/multi")


@pytest.mark.slow
def test_a_training_run_writes_and_chooses_on_the_new_metric(precision, tmp_path, xquad_root):
    from batchmix.config import CONF_DIR
    from batchmix.run.train import train

    overrides = ["model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=4",
                 "save_model=false", "logger=none", "eval.before=false", "eval.val_every_n_steps=2",
                 f"objective=val/{NAME}/multi"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    result = train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {f"{NAME}/multi", f"{NAME}/mono", f"{NAME}/cross", f"val/{NAME}/multi"} <= set(metrics)
    assert result["objective"] == pytest.approx(metrics[f"val/{NAME}/multi"])
