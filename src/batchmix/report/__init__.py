"""Sweep reports: `batchmix report <multirun dir | run dir | storage URL --study NAME>`.

Reusable pieces (also used by notebooks/ratio_sweep_analysis.ipynb):
`load_runs`, `load_histories`, `load_val_histories`, `smoothed_histories`, `by_ratio`, `sweep_shape`
(aggregate), the `plot_*` functions and palettes (plots), `selection_note` (selection_split),
`build_report` (sweep_report), `ReportModel` (model). Imported lazily, so the Hydra callback in
`batchmix.report.callback` costs nothing until a sweep ends.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_report": "batchmix.report.sweep_report",
    "by_ratio": "batchmix.report.aggregate",
    "find_run_dirs": "batchmix.core.run_dir",
    "load_histories": "batchmix.report.aggregate",
    "load_runs": "batchmix.report.aggregate",
    "load_val_histories": "batchmix.report.aggregate",
    "smoothed_histories": "batchmix.report.aggregate",
    "sweep_shape": "batchmix.report.aggregate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'batchmix.report' has no attribute {name!r}")
