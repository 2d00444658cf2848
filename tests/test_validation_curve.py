"""Evaluation as Lightning validation loops: the val curve, selection on val only, the best checkpoint.

Expected values come from outside the code under test: `eval.py` scoring the saved weights on the
val split in a fresh process (its own trainer), Lightning's CSV logger's file, and the max of the
curve the run wrote.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException
import torch
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError
from batchmix.run.preflight import validate
from batchmix.eval.settings import VAL_CURVE_KEYS

TINY = ["model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=6", "save_model=false", "logger=csv"]


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=overrides)


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory, xquad_root):
    from batchmix.run.train import train

    run_dir = tmp_path_factory.mktemp("curve")
    cfg = compose_cfg(TINY + [f"data.root={xquad_root}", "eval.val_every_n_steps=2", "checkpoint.best=true", "optim.lr=3e-3"])
    out = train(cfg, run_dir)
    return run_dir, out


@pytest.mark.slow
def test_val_curve_has_the_expected_steps_and_the_logger_got_the_same_values(curve_run):
    run_dir, out = curve_run
    curve = pd.read_csv(run_dir / "val_history.csv")
    assert list(curve["step"]) == [0, 2, 4, 6]  # before training, every 2 of the 6 steps (6 is also the end)
    assert (curve["n_queries"] > 0).all() and (curve["seconds"] > 0).all()
    logged = pd.read_csv(run_dir / "csv" / "metrics.csv")
    for key in VAL_CURVE_KEYS:
        values = logged[f"val/{key}"].dropna().tolist()
        assert values == pytest.approx(curve[f"val/{key}"].tolist(), rel=1e-6, abs=1e-6)  # Lightning logs float32


@pytest.mark.slow
def test_final_val_metrics_are_the_objective_and_equal_eval_py_on_the_saved_weights(curve_run, tmp_path, xquad_root):
    """The validation loop's numbers = eval.py's (another trainer, another process's batches) on the same weights."""
    from batchmix.run.evaluate import evaluate

    run_dir, out = curve_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert out["objective"] == metrics["val/map/multi"]
    curve = pd.read_csv(run_dir / "val_history.csv")
    assert metrics["val/map/multi"] == pytest.approx(curve["val/map/multi"].iloc[-1], abs=1e-9)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("eval", overrides=[f"checkpoint={run_dir}", "split=val", "data.languages=[en,de,es]", f"data.root={xquad_root}", "eval.trec=false"])
    scored = evaluate(cfg, tmp_path / "eval")["metrics"]
    for key in ("map/multi", "map/mono", "map/cross", "recall@10/multi", "bias/rank_distance", "map/cross/de-en"):
        assert metrics[f"val/{key}"] == pytest.approx(scored[key], abs=1e-6)
    conv = json.loads((run_dir / "convergence.json").read_text())
    assert conv["conv/val/map/multi/final"] == pytest.approx(metrics["val/map/multi"])


@pytest.mark.slow
def test_best_checkpoint_holds_the_weights_of_the_best_val_point(curve_run):
    run_dir, _ = curve_run
    curve = pd.read_csv(run_dir / "val_history.csv")
    during_fit = curve[curve["step"] > 0]  # the best is chosen among fit's validations
    best_step = int(during_fit.loc[during_fit["val/map/multi"].idxmax(), "step"])
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["global_step"] == best_step
    assert "optimizer_states" not in best  # weights only: last.ckpt is the one that resumes
    callbacks = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["callbacks"]
    (state,) = [v for k, v in callbacks.items() if k.startswith("ModelCheckpoint")]
    assert float(state["best_model_score"]) == pytest.approx(during_fit["val/map/multi"].max(), abs=1e-6)


@pytest.mark.slow
def test_final_from_best_scores_the_best_weights(tmp_path, xquad_root):
    from batchmix.run.train import train

    cfg = compose_cfg(TINY + [f"data.root={xquad_root}", "eval.val_every_n_steps=2", "checkpoint.best=true", "eval.final_from=best",
                              "optim.lr=3e-3", "eval.before=false"])
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    curve = pd.read_csv(tmp_path / "val_history.csv")
    assert list(curve["step"]) == [2, 4, 6]  # the final round (best weights) adds no point of its own
    assert metrics["val/map/multi"] == pytest.approx(curve["val/map/multi"].max(), abs=1e-6)
    # eval.py on the run scores the model the run reported: its best checkpoint, not last.ckpt.
    from batchmix.run.evaluate import evaluate

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        ev = compose("eval", overrides=[f"checkpoint={tmp_path}", "split=test", "data.languages=[en,de,es]", f"data.root={xquad_root}", "eval.trec=false"])
    assert evaluate(ev, tmp_path / "eval")["metrics"]["map/multi"] == pytest.approx(metrics["map/multi"], abs=1e-6)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["objective=map/multi"], r"objective='map/multi' reads the reported \(test\) split.*objective=val/map/multi"),
        (["objective=[val/map/multi,bias/rank_distance]"], r"objective='bias/rank_distance' reads the reported"),
        (["eval.final_from=best"], r"eval.final_from=best needs checkpoint.best=true"),
        (["checkpoint.best=true", "eval.val_every_n_steps=0"], r"checkpoint.best=true needs eval.val_every_n_steps > 0"),
        (["checkpoint.best=true", "objective=val/mrr/mono"], r"follows 'val/mrr/mono', which is not on the val curve"),
        (["eval.val_every_n_steps=-1"], r"eval.val_every_n_steps=-1 must be a non-negative integer"),
        (["eval.final_from=first"], r"eval.final_from='first' is not one of \['last', 'best'\]"),
        (["eval.batch_size=0"], r"eval.batch_size=0 must be a positive integer"),
    ],
)
def test_choosing_on_anything_but_val_is_refused_in_one_line(overrides, message):
    with pytest.raises(BatchmixError, match=message) as err:
        validate(compose_cfg(TINY + overrides))
    assert "\n" not in str(err.value)


def test_allow_test_selection_lets_a_test_objective_through():
    validate(compose_cfg(TINY + ["objective=map/multi", "allow_test_selection=true"]))
    with pytest.raises(ConfigCompositionException, match="allow_test_selection=maybe"):  # refused by the schema
        validate(compose_cfg(TINY + ["objective=map/multi", "allow_test_selection=maybe"]))


@pytest.mark.slow
def test_validating_does_not_change_training(tmp_path, xquad_root):
    """The same run with and without periodic validation takes the same steps: an evaluation loop
    must draw nothing from the random state dropout uses (the tiny BERT trains with dropout 0.1)."""
    from batchmix.run.train import train

    losses = {}
    for every in (0, 2):
        cfg = compose_cfg(TINY + [f"data.root={xquad_root}", f"eval.val_every_n_steps={every}"])
        train(cfg, tmp_path / str(every))
        losses[every] = pd.read_csv(tmp_path / str(every) / "history.csv")["loss"].tolist()
    assert losses[2] == losses[0]


def test_a_run_without_val_articles_is_one_line_before_the_model_loads(tmp_path, xquad_root):
    from batchmix.run.train import train

    cfg = compose_cfg(TINY + [f"data.root={xquad_root}", "data.split.train=0.9", "data.split.val=0.0", "data.split.test=0.1"])
    with pytest.raises(BatchmixError, match=r"the val split is empty .*data.split.val=0.1"):
        train(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_run_killed_after_a_validation_resumes_with_its_whole_val_curve(tmp_path, xquad_root, monkeypatch):
    """checkpoint.every_n_steps and eval.val_every_n_steps meet at step 4: last.ckpt is written after that
    validation, so a run that dies there resumes with the point of step 4 and ends with the curve of an
    uninterrupted run."""
    import lightning as L

    import batchmix.run.train as recipe

    overrides = TINY + [f"data.root={xquad_root}", "eval.val_every_n_steps=2", "checkpoint.every_n_steps=4"]
    recipe.train(compose_cfg(overrides), tmp_path / "whole")

    class DieBeforeStep5(L.Callback):  # after step 4's validation and checkpoint, before step 5 trains
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 4:
                raise RuntimeError("killed")

    monkeypatch.setattr(recipe, "pruning_callbacks", lambda *_: [DieBeforeStep5()])
    with pytest.raises(RuntimeError, match="killed"):
        recipe.train(compose_cfg(overrides), tmp_path / "killed")
    saved = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 4
    (state,) = [v for k, v in saved["callbacks"].items() if k.startswith("LAReQAValidation")]
    assert [row["step"] for row in state["history"]] == [0, 2, 4]
    monkeypatch.setattr(recipe, "pruning_callbacks", lambda *_: [])
    recipe.train(compose_cfg(overrides), tmp_path / "killed")
    whole = pd.read_csv(tmp_path / "whole" / "val_history.csv")
    resumed = pd.read_csv(tmp_path / "killed" / "val_history.csv")
    assert list(resumed["step"]) == list(whole["step"]) == [0, 2, 4, 6]
    assert resumed["val/map/multi"].tolist() == pytest.approx(whole["val/map/multi"].tolist(), abs=1e-9)
