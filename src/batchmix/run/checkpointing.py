"""`<run dir>/checkpoints/last.ckpt`: written so that a killed run continues exactly where it stopped.

Why not Lightning's `ModelCheckpoint` alone: it saves either every N steps or at epoch ends, not
both in one instance (a step-triggered one never saves the final state unless nothing was saved
before), and its `save_on_exception` saves on *any* error, so a non-finite loss would overwrite the
last good state. `LastCheckpoint` writes the one file `last.ckpt`:

- every `checkpoint.every_n_steps` optimizer steps: a SIGKILL (OOM killer, dead node) loses at most
  that many steps;
- when training ends: the trained model that `eval.py checkpoint=<run dir>` reads;
- on SIGTERM (scancel, a pre-empted job, `kill`): Lightning turns the signal into `SIGTERMException`
  between two steps, and the state there is saved, so nothing is lost. A SIGTERM during fit's periodic
  validation is held until that validation has ended on every rank (see `on_validation_start`).

It also stores the random number generators' states (every DDP rank's), which Lightning does not:
dropout then draws the same masks after a resume as without the interruption, and the resumed run's
weights, losses and metrics equal an uninterrupted run's.

`AtomicCheckpointIO` writes every Lightning checkpoint as temp file + fsync + rename in the target
folder. Lightning 2.6's own `_atomic_save` goes through an fsspec transaction whose temp file lies in
the system temp dir: when that is another filesystem (tmpfs /tmp, a cluster's scratch vs. home), the
final "move" is a copy onto `last.ckpt` itself, and a kill during the copy leaves it torn.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from batchmix.core.distributed import world_size
from batchmix.run.preflight import check_every_n_steps
from batchmix.core.io import atomic_open
from batchmix.core.run_dir import BEST_CHECKPOINT, LAST_CHECKPOINT

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
    """Saves `<dirpath>/last.ckpt` every `every_n_steps` steps, at the end of training and on SIGTERM.

    List it after any other checkpoint callback (Lightning keeps their order): its `on_validation_end`
    may stop the run on a held SIGTERM, and `best.ckpt` must have seen that val point first."""

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
        self._sigterm_handler: Any = None  # the handler to put back after a validation (None: not holding)
        self._sigterm_held = False

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

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Hold SIGTERM during fit's periodic validation. Under DDP, Lightning's signal handler runs a
        # broadcast (and rank 0 forwards the signal to the ranks it started), and each rank raises
        # SIGTERMException at its own next validation batch: the ranks' collectives stop matching (a
        # hang), or the run stops mid-validation and its resumed run lacks that val point.
        if (trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and self._sigterm_handler is None
                and threading.current_thread() is threading.main_thread()):
            self._sigterm_held = False
            previous = signal.signal(signal.SIGTERM, self._hold_sigterm)
            self._sigterm_handler = signal.SIG_DFL if previous is None else previous

    def _hold_sigterm(self, signum: int, frame: Any) -> None:
        if not self._sigterm_held:
            log.info("SIGTERM during validation: stopping once it has ended on every rank")
        self._sigterm_held = True

    def _release_sigterm(self) -> None:
        if self._sigterm_handler is not None:
            signal.signal(signal.SIGTERM, self._sigterm_handler)
            self._sigterm_handler = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        if self._due_after_validation == trainer.global_step:
            self._due_after_validation = None
            self.save(trainer)
        if self._sigterm_handler is None:
            return
        # Every rank is here, past the metric's collectives: one all-reduce tells them all whether any
        # rank got the signal, so they all stop at this step, where on_exception saves.
        stop = trainer.strategy.reduce_boolean_decision(self._sigterm_held, all=False)
        self._release_sigterm()
        if stop:
            raise SIGTERMException
        if self._sigterm_held:  # arrived after the vote: Lightning's own handling, as one just after validation
            signal.raise_signal(signal.SIGTERM)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.saved_step:
            self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._release_sigterm()  # an error inside validation: SIGTERM is Lightning's again
        # Only SIGTERM: Lightning raises it between two steps, so the state is consistent. Any other
        # error (a non-finite loss, a bug) must leave the last periodic checkpoint as it is.
        if isinstance(exception, SIGTERMException) and trainer.global_step != self.saved_step and trainer.model is not None:
            self.save(trainer)

    # ---------------------------------------------------------------- random state
    def state_dict(self) -> dict[str, Any]:
        # Every rank's states, in rank order (`save` runs on every rank, so the gather is matched): under
        # DDP each rank draws its own dropout masks, and rank 0's states restored on every rank would
        # change the other ranks' masks after a resume. "rng": rank 0's, as older checkpoints hold it.
        states = _rng_states()
        ranks = [states]
        if world_size() > 1:
            ranks = [None] * world_size()
            dist.all_gather_object(ranks, states)
        return {"rng": ranks[0], "rng_ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks, world = state_dict.get("rng_ranks") or [], world_size()
        if len(ranks) == world:
            self._rng_to_restore = ranks[dist.get_rank() if world > 1 else 0]
        else:  # an older checkpoint, or another world size: rank 0's states on every rank, the best there is
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
