"""`<run dir>/checkpoints/last.ckpt`: written so that a killed run continues exactly where it stopped.

Why not Lightning's `ModelCheckpoint` alone: it saves either every N steps or at epoch ends, not
both in one instance (a step-triggered one never saves the final state unless nothing was saved
before), and its `save_on_exception` saves on *any* error, so a non-finite loss would overwrite the
last good state. `LastCheckpoint` writes the one file `last.ckpt`:

- every `checkpoint.every_n_steps` optimizer steps: a SIGKILL (OOM killer, dead node) loses at most
  that many steps;
- when training ends: the trained model that `eval.py checkpoint=<run dir>` reads;
- on SIGTERM (scancel, a pre-empted job, `kill`): Lightning turns the signal into `SIGTERMException`
  between two steps, and the state there is saved, so nothing is lost.

It also stores the random number generators' states, which Lightning does not: dropout then draws
the same masks after a resume as without the interruption, and the resumed run's weights, losses
and metrics equal an uninterrupted run's.

`AtomicCheckpointIO` writes every Lightning checkpoint as temp file + fsync + rename in the target
folder. Lightning 2.6's own `_atomic_save` goes through an fsspec transaction whose temp file lies in
the system temp dir: when that is another filesystem (tmpfs /tmp, a cluster's scratch vs. home), the
final "move" is a copy onto `last.ckpt` itself, and a kill during the copy leaves it torn.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from batchmix.preflight import check_every_n_steps
from batchmix.io import atomic_open
from batchmix.run_dir import BEST_CHECKPOINT, LAST_CHECKPOINT

log = logging.getLogger("batchmix")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into a temp file beside the checkpoint, then `os.replace`: a reader (or a resumed
    run) sees the previous complete checkpoint or the new complete one, never a torn file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote storage: Lightning's own path
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


class LastCheckpoint(Checkpoint):
    """Saves `<dirpath>/last.ckpt` every `every_n_steps` steps, at the end of training and on SIGTERM."""

    def __init__(self, dirpath: str | Path, every_n_steps: int = 50, val_every_n_steps: int = 0) -> None:
        self.path = Path(dirpath) / LAST_CHECKPOINT
        self.every_n_steps = check_every_n_steps(every_n_steps)
        # A save due at a step that also validates waits for that validation (`on_validation_end`):
        # saved before it, a resumed run would skip the validation (Lightning restarts past it) and
        # lose that point of the val curve.
        self.val_every_n_steps = val_every_n_steps
        self.saved_step: int | None = None  # global step of the state last written (None: none this fit)
        self._due_after_validation: int | None = None
        self._rng_to_restore: dict[str, Any] | None = None

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # every rank calls it (a barrier); rank 0 writes
        self.saved_step = trainer.global_step
        log.debug("saved %s at step %d", self.path, trainer.global_step)

    # ---------------------------------------------------------------- when
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path:
            self.saved_step = trainer.global_step  # that state is on disk already
            log.info("resuming from step %d of %s", trainer.global_step, trainer.ckpt_path)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self.saved_step:
            if self.val_every_n_steps and step % self.val_every_n_steps == 0:
                self._due_after_validation = step  # on_train_end / on_exception still save if it never comes
                return
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._due_after_validation == trainer.global_step and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._due_after_validation = None
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.saved_step:
            self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Only SIGTERM: Lightning raises it between two steps, so the state is consistent. Any other
        # error (a non-finite loss, a bug) must leave the last periodic checkpoint as it is.
        if isinstance(exception, SIGTERMException) and trainer.global_step != self.saved_step and trainer.model is not None:
            self.save(trainer)

    # ---------------------------------------------------------------- random state
    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_restore = state_dict.get("rng")

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        # Restored here, right before the first resumed step, not at load time: Lightning's set-up
        # between loading and training may draw random numbers the uninterrupted run never drew.
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None


def _rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states, as types `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def resolve_keep(keep: str, multirun: bool, exported: bool) -> str:
    """`auto`: a point of a sweep (`-m`) that exported `model/` keeps no checkpoint (eval.py reads
    `model/`; a finished point is not resumed), a single run keeps all (resume, `eval.py checkpoint=`)."""
    if keep != "auto":
        return keep
    return "none" if multirun and exported else "all"


def drop_checkpoints(checkpoints: Path, keep: str) -> list[Path]:
    """Delete the checkpoint files a finished run does not keep; returns them."""
    wanted = {"all": {LAST_CHECKPOINT, BEST_CHECKPOINT}, "last": {LAST_CHECKPOINT}, "best": {BEST_CHECKPOINT}, "none": set()}[keep]
    dropped = [p for p in (checkpoints / LAST_CHECKPOINT, checkpoints / BEST_CHECKPOINT) if p.name not in wanted and p.exists()]
    for path in dropped:
        path.unlink()
    return dropped
