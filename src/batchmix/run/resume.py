"""Rerunning a command into the same run dir continues the run instead of starting it over.

A killed run is resumed by running the same command again with the same `hydra.run.dir=<run dir>`
(a multirun: the same `-m` command with the same `hydra.sweep.dir`, whose job dirs are numbered
in the same order). With `resume=true` (the default) the run dir decides what happens:

- a finished run of the same resolved config (`config.yaml` equal, `metrics.json` written, and
  `model/` if `save_model`): nothing runs again; its saved objective is returned and logged as
  "already complete: <dir>", so a rerun multirun skips its finished points;
- an interrupted run of the same config with `checkpoints/last.ckpt`: training continues from it
  (same sampler position, optimizer, LR schedule, RNG state and loss history), logged as
  "resuming from step N of <ckpt>";
- an empty dir, or an interrupted run that never reached its first checkpoint: a fresh start;
- a run of a different config: an error naming the differing keys, rather than mixing two
  experiments in one dir.

`resume=false` always trains from scratch in the dir, discarding what a previous run left there.
Keys that do not change what is trained (`resume`, `logger`, `checkpoint`) are not compared.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from batchmix.core.errors import BatchmixError
from batchmix.config.legacy import upgrade
from batchmix.core.run_dir import BEST_CHECKPOINT, CHECKPOINTS, FAILED, LAST_CHECKPOINT, METRICS, METRICS_BEFORE, VAL_HISTORY, RunDir, flatten, read_json
from batchmix.eval.objectives import select_objective

log = logging.getLogger("batchmix")

NOT_COMPARED = ("resume", "logger", "checkpoint")
# What a previous run leaves that decides how a rerun continues (deleted on a fresh start).
RUN_STATE_FILES = (f"{CHECKPOINTS}/{LAST_CHECKPOINT}", f"{CHECKPOINTS}/{BEST_CHECKPOINT}", METRICS, METRICS_BEFORE, FAILED, VAL_HISTORY)
# batchmix.core.io's temp files (`.<name>.<8 random chars>.tmp`, files or staging dirs) left by a killed writer.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


@dataclass(frozen=True)
class ResumePlan:
    checkpoint: Path | None = None           # continue training from this checkpoint
    finished: dict[str, Any] | None = None   # the run is complete: what train() returns for it


def plan_resume(cfg: DictConfig, run_dir: Path) -> ResumePlan:
    """What to do with `run_dir` before this job writes anything into it (see the module docstring)."""
    resume = cfg.resume  # a bool: the schema refuses anything else at compose
    is_main = rank_zero_only.rank == 0
    if is_main:
        remove_stale_temp_files(run_dir)
    rd = RunDir(run_dir)
    checkpoint = rd.last_checkpoint
    if resume and rd.config_file.exists():
        adopt_legacy(rd.load_config(), cfg, run_dir)
        differences = config_differences(rd.load_config(), cfg)
        if differences:
            raise BatchmixError(
                f"run dir {run_dir} already holds a run of another config ({'; '.join(differences[:3])}); rerun with the same "
                f"overrides to resume it, choose a new hydra.run.dir / hydra.sweep.dir, or set resume=false to start it over"
            )
        finished = _finished_result(cfg, run_dir)
        if finished is not None:
            log.info("already complete: %s (%s = %s)", run_dir, cfg.objective, finished["objective"])
            return ResumePlan(finished=finished)
        if checkpoint.exists():
            failed = rd.failed_file
            if failed.exists() and is_main:
                log.warning("the previous attempt in %s stopped: %s", run_dir, _read_leniently(failed).get("error", "?"))
                failed.unlink()
            log.info("%s holds an interrupted run of this config: continuing it from %s", run_dir, checkpoint)
            return ResumePlan(checkpoint=checkpoint)
    if is_main:
        for name in RUN_STATE_FILES:
            (run_dir / name).unlink(missing_ok=True)
    return ResumePlan()


def _flat_pair(saved: DictConfig, cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(saved, now) as flat dotted keys, the saved one upgraded to today's keys (batchmix.config.legacy), and
    the keys the upgrade derived. `now` is what this job would write to config.yaml (the same YAML round trip)."""
    now = OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True))
    new_flat = flatten(OmegaConf.to_container(now))
    old_flat, derived = upgrade(flatten(OmegaConf.to_container(saved)), new_flat)
    return old_flat, new_flat, derived


def config_differences(saved: DictConfig, cfg: DictConfig) -> list[str]:
    """`key: saved -> now` for every resolved value that differs (NOT_COMPARED keys aside); a saved
    config from before a key existed reads as holding its legacy value (batchmix.config.legacy)."""
    old_flat, new_flat, _ = _flat_pair(saved, cfg)
    keys = sorted(k for k in old_flat.keys() | new_flat.keys() if k.split(".")[0] not in NOT_COMPARED)
    missing = "<unset>"
    return [f"{k}: {old_flat.get(k, missing)} -> {new_flat.get(k, missing)}" for k in keys if old_flat.get(k, missing) != new_flat.get(k, missing)]


def adopt_legacy(saved: DictConfig, cfg: DictConfig, run_dir: Path) -> list[str]:
    """Resume a run made before a key existed with the behaviour it had: each key its saved config
    lacks takes its legacy value in `cfg` (in place), unless this command sets the key itself (then
    the configs differ and the run is refused as another config). Returns `key=value` adopted."""
    old_flat, new_flat, derived = _flat_pair(saved, cfg)
    explicit = command_line_keys()
    adopted = []
    for key in derived:
        if old_flat[key] != new_flat.get(key) and key not in explicit:
            with open_dict(cfg):
                OmegaConf.update(cfg, key, old_flat[key], merge=False)
            adopted.append(f"{key}={old_flat[key]}")
    if adopted:
        log.info("%s was made before %s existed: it continues as it ran (%s)", run_dir,
                 ", ".join(a.split("=")[0] for a in adopted), ", ".join(adopted))
    return adopted


def command_line_keys() -> set[str]:
    """The config keys this job's command line sets (Hydra's task overrides); none outside Hydra."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # not inside a Hydra job (a test, a notebook calling train())
        return set()
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides}


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files / staging dirs of writers killed mid-write (the real files are intact).

    Looked for where batchmix writes (the run dir itself, `checkpoints/`, `eval/`), not in the
    loggers' folders, nor anywhere else a run dir pointed at by mistake might reach."""
    removed: list[Path] = []
    rd = RunDir(run_dir)
    folders = [run_dir, rd.checkpoints_dir, *(Path(f) for f, _, _ in os.walk(rd.eval_root))]
    for folder in folders:
        for path in folder.glob(".*.tmp") if folder.is_dir() else []:
            if _TEMP_NAME.match(path.name):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.info("removed %d temp file(s) left by an interrupted write in %s", len(removed), run_dir)
    return removed


def sigterm_exit(run_dir: Path, step: int) -> SystemExit:
    """What train() raises when Lightning stopped on SIGTERM (and LastCheckpoint saved the state)."""
    log.warning("stopped by SIGTERM at step %d; %s holds that state: rerun the same command with the same run dir "
                "(hydra.run.dir / hydra.sweep.dir) to resume", step, RunDir(run_dir).last_checkpoint)
    return SystemExit(128 + signal.SIGTERM)


def _finished_result(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    rd = RunDir(run_dir)
    metrics = _read_leniently(rd.metrics_file)
    if not metrics or (cfg.save_model and not rd.model_info_file.exists()):
        return None
    before = _read_leniently(rd.metrics_before_file)
    return {"objective": select_objective(cfg.objective, metrics), "metrics": metrics, "metrics_before": before,
            "run_dir": run_dir, "already_complete": True}


def _read_leniently(path: Path) -> dict[str, Any]:
    """A torn or unreadable file of an interrupted run counts as absent: the run is not finished,
    and a fresh start or the checkpoint replaces it."""
    try:
        return read_json(path)
    except (OSError, BatchmixError):
        return {}
