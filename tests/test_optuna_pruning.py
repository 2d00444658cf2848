"""The Lightning pruning callback on a real (tiny) model: it reports each point of the val curve
(val/map/multi every eval.val_every_n_steps steps) to the job's trial and ends `fit` with
optuna.TrialPruned when the pruner says so; it is off outside an Optuna trial."""

from __future__ import annotations

import lightning as L
import optuna
import pytest
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.eval.scoring import evaluate_embeddings
from batchmix.run.sweep import trial as trial_context
from batchmix.config.schema import pruning_of
from batchmix.run.sweep.pruning import ValidationPruning, pruning_callbacks
from embeddings import encode_corpus

TINY = ["model=tiny", "data.languages=[en,de]", "data.batch_size=8", "data.batches_per_epoch=2", "save_model=false",
        "eval.before=false", "trainer.max_epochs=3", "ratio=cross_only"]


class RecordingTrial:
    """Stands in for optuna.Trial: records reports, prunes from the `prune_at` step on."""

    number = 7

    def __init__(self, prune_at: int | None) -> None:
        self.prune_at, self.reports = prune_at, {}

    def report(self, value: float, step: int) -> None:
        self.reports[step] = value

    def should_prune(self) -> bool:
        return self.prune_at is not None and max(self.reports) >= self.prune_at


@pytest.fixture(scope="module")
def setup(xquad_root):
    from batchmix.data.datamodule import HybridDataModule, PairCollator
    from batchmix.data.load import load_splits
    from batchmix.eval.rounds import EvalRound
    from batchmix.eval.validation import LAReQAValidation
    from batchmix.losses import build_loss
    from batchmix.models.factory import build_dual_encoder
    from batchmix.mixing.ratio import Ratio
    from batchmix.mixing.sampler import HybridBatchSampler

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=TINY)
    groups, splits = load_splits(cfg.data)

    def fit(callback: L.Callback, every: int = 2):
        L.seed_everything(0, verbose=False)
        module = build_dual_encoder(cfg.model, build_loss(cfg.loss), cfg.optim)
        sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], 8, Ratio(0, 1, 0), batches_per_epoch=2, seed=0)
        collator = PairCollator(groups, module.tokenizer, query_prefix="", passage_prefix="", query_max_length=16, passage_max_length=16)
        validation = LAReQAValidation(EvalRound({"val": splits["val"]}, tokenize=module.tokenize, batch_size=64, width=module.embedding_dim))
        trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, callbacks=[validation, callback],
                            val_check_interval=every, check_val_every_n_epoch=None)
        trainer.fit(module, datamodule=HybridDataModule(groups, sampler, collator, val_loaders=validation.val_dataloaders))
        return trainer, module, validation

    return cfg, splits, fit


def test_reports_each_point_of_the_val_curve_and_prunes(setup):
    cfg, splits, fit = setup
    trial = RecordingTrial(prune_at=4)
    with pytest.raises(optuna.TrialPruned, match="step 4"):
        fit(ValidationPruning(trial, "val/map/multi"))
    assert sorted(trial.reports) == [2, 4]  # stopped after the second report: no step 6
    assert all(0.0 <= v <= 1.0 for v in trial.reports.values())


def test_reported_value_is_the_val_curve_and_the_validation_metric(setup):
    cfg, splits, fit = setup
    trial = RecordingTrial(prune_at=None)
    trainer, module, validation = fit(ValidationPruning(trial, "val/map/multi"), every=3)
    assert trainer.global_step == 6 and sorted(trial.reports) == [3, 6]
    curve = {row["step"]: row["val/map/multi"] for row in validation.history}
    assert trial.reports == pytest.approx(curve, rel=1e-6)  # the same points the curve holds (logged as float32)
    # An independent path: encode_texts (another batching) and the scorer on the last weights.
    expected = evaluate_embeddings(splits["val"], *encode_corpus(splits["val"], module), progress=False)["map/multi"]
    assert trial.reports[6] == pytest.approx(expected, abs=1e-6)


def test_pruning_is_off_by_default_and_outside_a_trial(setup, monkeypatch):
    cfg, splits, _ = setup
    assert pruning_callbacks(pruning_of(cfg), cfg.objective) == []  # train.yaml has no pruning section
    for key in (trial_context.STORAGE_ENV, trial_context.STUDY_ENV, trial_context.TRIAL_ID_ENV):
        monkeypatch.delenv(key, raising=False)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        on = compose("train", overrides=TINY + ["hparams_search=ratio_optuna", "pruning.enabled=true"])
    assert pruning_callbacks(pruning_of(on), on.objective) == []  # configured, but this is not a trial


def test_callback_reaches_the_trial_through_the_environment(setup, tmp_path, monkeypatch):
    cfg, splits, _ = setup
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    for key, value in trial_context.trial_env(storage, "s", trial._trial_id).items():
        monkeypatch.setenv(key, value)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        on = compose("train", overrides=TINY + ["hparams_search=ratio_optuna", "pruning.enabled=true"])
    (callback,) = pruning_callbacks(pruning_of(on), on.objective)
    assert callback.metric == "val/map/multi" and callback.trial.number == trial.number
    trial_context.report(callback.trial, 0.25, step=2)
    assert optuna.load_study(study_name="s", storage=storage).trials[0].intermediate_values == {2: 0.25}
