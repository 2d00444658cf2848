"""Prune hopeless ratios early: evaluate the objective on the validation split every N epochs,
report it to the job's Optuna trial, stop training when the pruner says so.

Off unless `pruning.every_n_epochs > 0` (set by the hparams_search configs) *and* the job runs
inside a batchmix Optuna sweep (see `batchmix.sweep.trial`). Single-objective studies only:
Optuna cannot prune a multi-objective trial.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from batchmix.data.corpus import LAReQACorpus
from batchmix.errors import BatchmixError
from batchmix.eval.scoring import evaluate_corpus
from batchmix.sweep.objectives import objective_names
from batchmix.sweep.trial import current_trial, report

log = logging.getLogger("batchmix")


class ValidationPruning(L.Callback):
    """Every `every_n_epochs` epochs: `metric` on `corpus` -> `trial.report(value, step=epoch)`;
    raises `optuna.TrialPruned` (ending `fit`) when the trial's pruner prunes it.

    The study's direction must match the metric (maximise for mAP), as for the final objective.
    """

    def __init__(self, trial: Any, corpus: LAReQACorpus, every_n_epochs: int = 1, metric: str = "map/multi",
                 batch_size: int = 64, candidate_mode: str = "sentence") -> None:
        if every_n_epochs < 1:
            raise BatchmixError(f"pruning.every_n_epochs={every_n_epochs!r} must be >= 1 (0 turns pruning off)")
        self.trial, self.corpus, self.every_n_epochs, self.metric = trial, corpus, every_n_epochs, metric
        self.batch_size, self.candidate_mode = batch_size, candidate_mode
        self.reported: dict[int, float] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # epochs completed
        if epoch % self.every_n_epochs:
            return
        import optuna

        # Under DDP only global rank 0 evaluates and reports; its decision is broadcast so that
        # every rank leaves `fit` together (a rank left alone would wait in the next all-gather).
        pruned: str | None = None
        if trainer.is_global_zero:
            try:
                self._evaluate_and_report(pl_module, epoch)
            except optuna.TrialPruned as err:
                pruned = str(err)
        pruned = trainer.strategy.broadcast(pruned, src=0)
        if pruned:
            raise optuna.TrialPruned(pruned)

    def _evaluate_and_report(self, pl_module: L.LightningModule, epoch: int) -> None:
        with torch.no_grad():
            q_enc, p_enc = pl_module.encoders(self.batch_size)
            metrics = evaluate_corpus(self.corpus, q_enc, p_enc, candidate_mode=self.candidate_mode, progress=False)
        if self.metric not in metrics:
            raise BatchmixError(f"pruning.metric={self.metric!r} is not a validation metric; e.g. pruning.metric=map/multi")
        value = float(metrics[self.metric])
        self.reported[epoch] = value
        log.info("epoch %d: validation %s = %.4f (reported to trial %d)", epoch, self.metric, value, self.trial.number)
        report(self.trial, value, epoch)


def pruning_callbacks(cfg: DictConfig, splits: Mapping[str, LAReQACorpus]) -> list[L.Callback]:
    """The callbacks `train()` adds for `cfg.pruning` (none when off or outside an Optuna trial)."""
    pruning = OmegaConf.select(cfg, "pruning", default=None)
    every = int(pruning.get("every_n_epochs") or 0) if pruning else 0
    if every <= 0:
        return []
    trial = current_trial()
    if trial is None:
        log.info("pruning.every_n_epochs=%d ignored: this job is not a trial of a batchmix Optuna sweep", every)
        return []
    if len(trial.study.directions) > 1:
        log.warning("pruning is off: Optuna cannot prune a multi-objective study")
        return []
    split = pruning.get("split") or "val"
    if split not in splits or not splits[split].langs:
        raise BatchmixError(f"pruning.split={split!r} is empty or not one of the data.split keys {list(splits)}")
    metric = pruning.get("metric") or objective_names(cfg.objective)[0]
    return [ValidationPruning(trial, splits[split], every, metric, batch_size=cfg.eval.batch_size, candidate_mode=cfg.eval.candidates)]
