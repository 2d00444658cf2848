"""Stop training at the first non-finite loss, naming the step and the batch that produced it.

A NaN or inf loss poisons the weights at the next optimizer step, and every checkpoint after it,
while an unattended run goes on for hours. `NonFiniteLossGuard` looks at the loss before backward:
the step that produced it never changes the model, nothing is saved after it, so the last periodic
`checkpoints/last.ckpt` stays the last good state. The error is one line with the global step, the
batch type and the languages of the offending batch (the collated batch carries them) and where the
last good checkpoint is; `<run dir>/failed.json` records the same for whoever finds the run dir later.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from batchmix.run.checkpointing import LastCheckpoint
from batchmix.core.errors import BatchmixError
from batchmix.core.io import write_json
from batchmix.core.run_dir import FAILED

_BATCH_KEYS = ("batch_type", "query_langs", "positive_langs", "epoch", "index")


class NonFiniteLossError(BatchmixError):
    """The training loss became NaN or inf."""


class NonFiniteLossGuard(L.Callback):
    def __init__(self, run_dir: str | Path, checkpoint: LastCheckpoint | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.checkpoint = checkpoint
        self._batch: dict[str, Any] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch = {k: batch[k] for k in _BATCH_KEYS if isinstance(batch, dict) and k in batch}

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        # Under DDP all ranks decide together, so they stop at the same step instead of hanging.
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        local = float(loss.detach().float().reshape(-1)[0])
        record = self._record(trainer, str(local) if not math.isfinite(local) else "non-finite on another process")
        if trainer.is_global_zero:
            write_json(self.run_dir / FAILED, record)
        raise NonFiniteLossError(record["error"])

    def _record(self, trainer: L.Trainer, value: str) -> dict[str, Any]:
        step, b = trainer.global_step, self._batch
        where = f"global step {step}"
        if "index" in b:
            where += f" (batch {b['index']} of epoch {b['epoch']})"
        what = f"a {b.get('batch_type', '?')} batch"
        if "query_langs" in b:
            what += (f" with query languages {','.join(sorted(set(b['query_langs'])))}"
                     f" and positive languages {','.join(sorted(set(b['positive_langs'])))}")
        ckpt = self.checkpoint
        if ckpt is not None and ckpt.saved_step is not None and ckpt.path.exists():
            kept = f"the last good checkpoint {ckpt.path} (step {ckpt.saved_step}) is left as it was"
            good_path, good_step = str(ckpt.path), ckpt.saved_step
        else:
            every = f" (checkpoint.every_n_steps={ckpt.every_n_steps})" if ckpt is not None else ""
            kept = f"no checkpoint had been written yet{every}"
            good_path, good_step = None, None
        error = (
            f"non-finite training loss ({value}) at {where}, {what}; stopped before it changed the model, {kept}; "
            f"lower optim.lr or raise loss.temperature and start a new run (details in {self.run_dir / FAILED})"
        )
        return {
            "error": error, "loss": value, "step": step, "epoch": b.get("epoch"), "batch_index": b.get("index"),
            "batch_type": b.get("batch_type"), "query_langs": list(b.get("query_langs", [])),
            "positive_langs": list(b.get("positive_langs", [])),
            "last_good_checkpoint": good_path, "last_good_step": good_step,
        }
