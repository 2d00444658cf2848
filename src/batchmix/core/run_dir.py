"""The run folder: the one place that knows what a batchmix run leaves on disk, and how to read it.

Train, resume, `eval.py`, the sweeper and the report all go through `RunDir`, so a file is named
once and read one way (the layout a README or a notebook can rely on):

    <run>/config.yaml            the resolved config the run trained with
    <run>/versions.json          Python, library versions and git commit it started with (`batchmix.core.versions`)
    <run>/metrics.json           flat metrics of the trained model (present = the run finished)
    <run>/metrics_before.json    the same for the untrained model
    <run>/history.csv            one row per optimizer step (step, batch_type, loss, mse, ...)
    <run>/val_history.csv        one row per validation (step, seconds, pool size, val/map/multi, ...)
    <run>/convergence.json       `batchmix.eval.convergence` figures (NaN written as null)
    <run>/trunk_cache.json       the frozen-trunk cache (model.train_top_layers): texts, disk MB, build seconds, hits
    <run>/failed.json            why a run stopped (a non-finite loss), for whoever finds it later
    <run>/checkpoints/last.ckpt  the Lightning checkpoint a killed run resumes from
    <run>/checkpoints/best.ckpt  the weights with the best validation objective (checkpoint.best=true)
    <run>/model/                 HF-style export; model/batchmix.json says how to pool and prefix
    <run>/eval/<tag>/[<set>/]    one evaluation's outputs (`batchmix.eval.outputs`)
    <run>/csv/ tensorboard/ wandb/   the loggers' own folders

Every write is atomic (`batchmix.core.io`), so a file that exists is complete.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from batchmix.core.errors import BatchmixError
from batchmix.core.io import atomic_write_text, write_json

CONFIG = "config.yaml"
VERSIONS = "versions.json"
METRICS = "metrics.json"
METRICS_BEFORE = "metrics_before.json"
HISTORY = "history.csv"
VAL_HISTORY = "val_history.csv"
CONVERGENCE = "convergence.json"
FAILED = "failed.json"
TRUNK_CACHE = "trunk_cache.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
MODEL = "model"
MODEL_INFO = "batchmix.json"
EVAL = "eval"
LOGGER_DIRS = ("csv", "tensorboard", "wandb")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object file as a dict: {} when the file is missing or holds no object; invalid JSON
    is one `BatchmixError` line (a torn or hand-edited file), for the caller to report or tolerate."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise BatchmixError(f"{path} is not valid JSON ({err}); rerun that job or delete the file") from None
    return data if isinstance(data, dict) else {}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (`optim.lr`); leaves as they are, and an empty
    mapping kept as the leaf `{}` so that no key is lost (`{"a": {}}` -> `{"a": {}}`)."""
    if not isinstance(tree, Mapping):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out or {prefix.rstrip("."): {}}


def find_run_dirs(path: str | os.PathLike) -> list[Path]:
    """Run dirs under `path` (or `path` itself), sorted naturally (2 before 10): folders holding a
    `config.yaml` plus `metrics.json` and/or `history.csv`, at any depth; Hydra's `.hydra/` and a
    run's own sub-folders are not searched."""
    root = Path(path)
    if not root.exists():
        raise BatchmixError(f"{root} does not exist; pass a run dir or a multirun dir (e.g. multirun/2025-06-01/12-00-00)")
    skip = {".hydra", CHECKPOINTS, MODEL, *LOGGER_DIRS, "report", "__pycache__"}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        if CONFIG in filenames and (METRICS in filenames or HISTORY in filenames):
            found.append(Path(dirpath))
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.relative_to(root).as_posix())])


def _under_run(*parts: str) -> Any:
    """A read-only `RunDir` attribute: the path `parts` under the run folder (each name written once, above)."""
    return property(lambda self: self.path.joinpath(*parts))


class RunDir:
    """One run folder (or an `eval.py` output dir, which shares `metrics.json`): paths and typed I/O."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def of_model(cls, path: str | os.PathLike) -> "RunDir":
        """The run folder of what `checkpoint=` may name: the run dir, its model/ export, or a .ckpt in it."""
        path = Path(path).expanduser()
        if path.is_file():
            return cls(path.parent.parent)  # <run>/checkpoints/<name>.ckpt
        return cls(path.parent) if (path / MODEL_INFO).exists() else cls(path)

    # ------------------------------------------------------------------ paths
    config_file = _under_run(CONFIG)
    metrics_file = _under_run(METRICS)
    metrics_before_file = _under_run(METRICS_BEFORE)
    history_file = _under_run(HISTORY)
    val_history_file = _under_run(VAL_HISTORY)
    convergence_file = _under_run(CONVERGENCE)
    failed_file = _under_run(FAILED)
    checkpoints_dir = _under_run(CHECKPOINTS)
    last_checkpoint = _under_run(CHECKPOINTS, LAST_CHECKPOINT)
    best_checkpoint = _under_run(CHECKPOINTS, BEST_CHECKPOINT)
    model_dir = _under_run(MODEL)
    model_info_file = _under_run(MODEL, MODEL_INFO)
    eval_root = _under_run(EVAL)
    versions_file = _under_run(VERSIONS)

    def eval_dir(self, tag: str, eval_set: str | None = None) -> Path:
        """`eval/<tag>/` (the held-out split) or `eval/<tag>/<set>/` (an `eval.sets` entry)."""
        return self.eval_root / tag / eval_set if eval_set else self.eval_root / tag

    # ------------------------------------------------------------------ config
    def read_config(self) -> dict[str, Any]:
        """config.yaml as plain data ({} if missing or not a mapping); invalid YAML is one error line."""
        if not self.config_file.is_file():
            return {}
        try:
            cfg = yaml.safe_load(self.config_file.read_text()) or {}
        except yaml.YAMLError as err:
            raise BatchmixError(f"{self.config_file} is not valid YAML ({str(err).splitlines()[0]}); is it a batchmix run dir?") from None
        return cfg if isinstance(cfg, dict) else {}

    def load_config(self) -> DictConfig:
        """config.yaml as the DictConfig it was written from (for comparing with a job's config)."""
        return OmegaConf.load(self.config_file)

    def write_config(self, cfg: DictConfig) -> Path:
        return atomic_write_text(self.config_file, OmegaConf.to_yaml(cfg, resolve=True))

    # ------------------------------------------------------------------ versions
    def read_versions(self) -> dict[str, Any]:
        """versions.json ({} for a run made before it existed)."""
        return read_json(self.versions_file)

    def write_versions(self, versions: Mapping[str, Any]) -> Path:
        return write_json(self.versions_file, dict(versions))

    # ------------------------------------------------------------------ metrics
    def read_metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_file)

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        return write_json(self.metrics_file, dict(metrics))

    def read_metrics_before(self) -> dict[str, Any]:
        return read_json(self.metrics_before_file)

    def write_metrics_before(self, metrics: Mapping[str, Any]) -> Path:
        return write_json(self.metrics_before_file, dict(metrics))

    # ------------------------------------------------------------------ history and convergence
    def read_history(self) -> pd.DataFrame | None:
        """history.csv, or None when the run has none yet (missing or empty)."""
        return _read_csv(self.history_file)

    def write_history(self, history: pd.DataFrame) -> Path:
        return atomic_write_text(self.history_file, history.to_csv(index=False))

    def read_val_history(self) -> pd.DataFrame | None:
        """val_history.csv (one row per validation of the val split), or None when there is none."""
        return _read_csv(self.val_history_file)

    def write_val_history(self, history: pd.DataFrame) -> Path:
        return atomic_write_text(self.val_history_file, history.to_csv(index=False))

    def read_convergence(self) -> dict[str, float]:
        return {k: (math.nan if v is None else v) for k, v in read_json(self.convergence_file).items()}

    def write_convergence(self, summary: Mapping[str, float]) -> Path:
        """JSON has no NaN: a figure that does not exist (a type without steps) is written as null."""
        return write_json(self.convergence_file, {k: (None if math.isnan(v) else v) for k, v in summary.items()})


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
