"""Prune hopeless ratios early: report every point of the val curve to the job's Optuna trial, stop
training when the pruner says so.

The val curve is what `eval.val_every_n_steps` scores (`batchmix.eval.validation`); pruning reads
the same points the logger and val_history.csv get, at their global steps, so a trial is pruned on
the curve a researcher sees. Off unless `pruning.enabled=true` (the hparams_search configs) *and* the
job runs inside a batchmix Optuna sweep (see `batchmix.run.sweep.trial`). Single-objective studies only:
Optuna cannot prune a multi-objective trial.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from batchmix.config.schema import PruningConfig

from batchmix.eval.selection import monitor
from batchmix.run.sweep.trial import current_trial, report

log = logging.getLogger("batchmix")


class ValidationPruning(L.Callback):
    """After each periodic validation in `fit`: `metric` (a `val/...` curve key) ->
    `trial.report(value, step=global_step)`; raises `optuna.TrialPruned` (ending `fit`) when the
    trial's pruner prunes it. The study's direction must match the metric (maximise for mAP)."""

    def __init__(self, trial: Any, metric: str = "val/map/multi") -> None:
        self.trial, self.metric = trial, metric
        self.reported: dict[int, float] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        import optuna

        # Under DDP only global rank 0 reports; its decision is broadcast so that every rank leaves
        # `fit` together (a rank left alone would wait in the next all-gather).
        pruned: str | None = None
        if trainer.is_global_zero:
            value, step = float(trainer.callback_metrics[self.metric]), trainer.global_step
            self.reported[step] = value
            log.info("step %d: %s = %.4f (reported to trial %d)", step, self.metric, value, self.trial.number)
            try:
                report(self.trial, value, step)
            except optuna.TrialPruned as err:
                pruned = str(err)
        pruned = trainer.strategy.broadcast(pruned, src=0)
        if pruned:
            raise optuna.TrialPruned(pruned)


def pruning_callbacks(pruning: PruningConfig, objective: Any) -> list[L.Callback]:
    """The callbacks `train()` adds for the `pruning` node (none when off or outside an Optuna trial),
    following `pruning.metric` or else the objective's first name; `batchmix.eval.selection` checked
    them and eval.val_every_n_steps before anything loaded."""
    if not pruning.enabled:
        return []
    trial = current_trial()
    if trial is None:
        log.info("pruning.enabled=true ignored: this job is not a trial of a batchmix Optuna sweep")
        return []
    if len(trial.study.directions) > 1:
        log.warning("pruning is off: Optuna cannot prune a multi-objective study")
        return []
    metric, _ = monitor(objective, pruning.metric)
    return [ValidationPruning(trial, metric)]
