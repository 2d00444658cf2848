"""`python tests/sigterm_in_validation.py <train.py overrides>`: train.py, where with
BATCHMIX_TEST_SIGTERM_STEP=N every rank sends SIGTERM to itself at its first batch of the periodic
validation after step N, as a scheduler's scancel reaches every task of a job.

A script, not a monkeypatch in the test: under `trainer=ddp` Lightning starts the other ranks by
running this same script with the same environment, so every rank gets the callback. The signal
lands at a known point inside that validation on every rank: no sleep race.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

import batchmix.run.train as recipe
from batchmix.run.cli import train_main

STEP = os.environ.get("BATCHMIX_TEST_SIGTERM_STEP")


class SigtermInValidation(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.state.fn == TrainerFn.FITTING and trainer.global_step == self.step and (dataloader_idx, batch_idx) == (0, 0):
            os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    if STEP:  # the recipe's slot for extra callbacks (Optuna pruning; none in these runs)
        recipe.pruning_callbacks = lambda *_: [SigtermInValidation(int(STEP))]
    train_main()
