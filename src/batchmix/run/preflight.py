"""The pre-flight: every option checked before any data or model loads, so a typo costs a second.

Each component checks its own options (the loss when built, the pooling when built, `data/checks.py`,
`models/checks.py`, `eval/`, `distributed.py`, `eval/objectives.py`); this module only calls them,
in one order, for `train.py` / `eval.py` / the sweep dry run, and checks the options of the run
itself (`optim.lr`, `resume`, `checkpoint.every_n_steps`, the run dir). Every failure is one
`BatchmixError` line.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from batchmix.config.schema import pruning_of
from batchmix.data.checks import check_batches, check_data, check_data_files, check_loader
from batchmix.core.distributed import check_world_size
from batchmix.core.errors import BatchmixError
from batchmix.eval.baselines import check_baselines
from batchmix.eval.scoring import check_candidates
from batchmix.eval.sets import EvalSet, eval_sets
from batchmix.run.loggers import logger_builder
from batchmix.losses import build_loss, loss_choice
from batchmix.models.checks import check_model
from batchmix.core.options import positive_int, positive_number, select
from batchmix.mixing.ratio import Ratio
from batchmix.eval.selection import check_selection


def check_ratio(cfg: DictConfig) -> Ratio:
    ratio_cfg = select(cfg, "ratio")
    if not isinstance(ratio_cfg, DictConfig):
        raise BatchmixError(f"ratio={ratio_cfg!r} must be a mapping such as ratio.mono=0.5 ratio.multi=0.0")
    return Ratio.from_mapping(OmegaConf.to_container(ratio_cfg, resolve=True))


class Checked(NamedTuple):
    """What the pre-flight parsed, for the recipe to use rather than parse again."""
    ratio: Ratio
    sets: list[EvalSet]  # eval.sets, those missing and optional left out


def validate(cfg: DictConfig, warn: bool = False) -> Checked:
    """Fail fast on impossible training settings, without reading a file (`warn`: about each optional
    eval set left out as missing; the recipe's own call says it, not the entry point's)."""
    ratio = check_ratio(cfg)
    check_batches(cfg.data)
    loss = build_loss(select(cfg, "loss"))  # the loss checks its own options; building it loads nothing
    check_world_size(cfg.trainer, cfg.data.batch_size)
    check_model(cfg.model)
    hard_negatives = check_loader(cfg.data)
    if hard_negatives and not loss.in_batch:  # a per-example loss scores no negatives
        raise BatchmixError(f"data.hard_negatives={hard_negatives} has no use in loss={loss_choice(cfg.loss)} (a per-example "
                            "loss, no negatives); set data.hard_negatives=0 or loss=infonce")
    check_every_n_steps(cfg.checkpoint.every_n_steps)
    check_keep(cfg.checkpoint.keep)
    logger_builder(select(cfg, "logger"))  # the logger's options (nothing is started)
    check_candidates(cfg.eval.candidates)
    positive_int("eval.batch_size", cfg.eval.batch_size)
    check_baselines(cfg.eval.baselines)
    sets = eval_sets(cfg.eval.sets, cfg.data, warn=warn)  # keys, splits, no training questions, data roots
    # objective, pruning metric, best checkpoint: the val split only
    check_selection(cfg.objective, pruning_of(cfg), cfg.eval, cfg.checkpoint, allow_test=cfg.allow_test_selection)
    positive_number("optim.lr", select(cfg, "optim.lr"), "3e-5")
    return Checked(ratio, sets)


def validate_train(cfg: DictConfig, warn: bool = False) -> Checked:
    """`validate`, then the data settings that need no file read (data root, languages, split shares)."""
    checked = validate(cfg, warn)
    check_data(cfg.data, cfg.eval.split)
    return checked


def validate_eval(cfg: DictConfig) -> None:
    """What `eval.py` can check before its model loads."""
    check_data_files(cfg.data)
    check_candidates(cfg.eval.candidates)
    positive_int("eval.batch_size", cfg.eval.batch_size)
    check_baselines(cfg.eval.baselines)
    check_model(cfg.model)
    check_device(cfg.device, cfg.precision)


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "64-true")  # auto: a batchmix run's own (run/evaluate.py)


def check_device(device: Any, precision: Any) -> None:
    """eval.py's `device` and `precision` (the trainer's, for train.py, are Lightning's to check)."""
    if device not in DEVICES:
        raise BatchmixError(f"device={device!r} is not one of {list(DEVICES)}; e.g. device=cuda (auto: a GPU if there is one)")
    if precision not in PRECISIONS:
        raise BatchmixError(f"precision={precision!r} is not one of {list(PRECISIONS)}; e.g. precision=bf16-mixed on a GPU")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BatchmixError("device=cuda but this machine has no usable CUDA device; use device=cpu or device=auto")


KEEP = ("auto", "all", "last", "best", "none")


def check_keep(keep: Any) -> str:
    """`checkpoint.keep`: which checkpoint files a finished run keeps (batchmix.run.checkpointing.resolve_keep)."""
    if keep not in KEEP:
        raise BatchmixError(f"checkpoint.keep={keep!r} is not one of {list(KEEP)}: e.g. checkpoint.keep=none in a sweep")
    return keep


def check_every_n_steps(value: Any) -> int:
    """`checkpoint.every_n_steps`: how often `checkpoints/last.ckpt` is saved during training."""
    if value < 0:  # an int: the schema's type
        raise BatchmixError(
            f"checkpoint.every_n_steps={value!r} must be a non-negative integer (0: only at the end of training and on SIGTERM)"
        )
    return value


def check_writable(path: Path, key: str = "hydra.run.dir") -> Path:
    """The run dir must be writable before hours of training, not after (`key`: the setting to fix)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A probe file of its own: DDP ranks check the same dir at once, and a shared probe name
        # let one rank delete the file another was about to delete (seen as a rank dying at start).
        with tempfile.TemporaryFile(dir=path, prefix=".batchmix_write_test."):
            pass
    except OSError as err:
        raise BatchmixError(f"output dir {path} is not writable ({err.strerror}); set {key}=<a writable folder>") from None
    return path


def offline_defaults() -> None:
    """No network here is the normal case: never let an unreachable hub stall a run for minutes."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
