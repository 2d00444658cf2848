"""A trial whose job gave no result back (a SLURM job that hit its time limit after writing its
results, a launch interrupted after some of its jobs finished) is told from its run dir: the job's
`metrics.json` (written atomically, so present means complete) and the `objective` of its
`config.yaml`. Without a `metrics.json` the trial is FAIL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from batchmix.core.errors import BatchmixError
from batchmix.core.run_dir import RunDir
from batchmix.eval.objectives import select_objective


def result_from_run_dir(run_dir: Optional[Path], objective: Any) -> Optional[Any]:
    """The value(s) the job would have returned, or None when its run dir holds no usable result.

    `objective`: the sweep's `objective` key, used when the run dir has no `config.yaml`."""
    rd = RunDir(run_dir) if run_dir is not None else None
    if rd is None or not rd.metrics_file.is_file():
        return None
    try:
        metrics = rd.read_metrics()
        if rd.config_file.is_file():
            objective = OmegaConf.select(rd.load_config(), "objective") or objective
        return None if objective is None else select_objective(objective, metrics)
    except (OSError, ValueError, BatchmixError):
        return None
