"""Every run of a sweep (or one run) as one pandas table, and every per-step history as another.

A run is a folder holding batchmix's `config.yaml` plus `metrics.json` and/or `history.csv` (what
`batchmix.run.train.train` writes into each Hydra job dir); folders are found at any depth, so a
multirun dir, a dir of multiruns, or a single run dir all work. Hydra's own `.hydra/config.yaml`
is not a run.

`load_runs` columns: `run` (path relative to the given root), `run_dir`, `status` (complete = has
metrics.json), `ratio_<type>` per batch type of `batchmix.mixing.batch_types` (`ratio_mono`, `ratio_cross`,
`ratio_multi`, ...; a type missing from a run's ratio has share 0), `ratio` (label `mono/cross/multi`),
`seed`, every metrics.json key, `before/<key>` for the aggregate keys of metrics_before.json,
the convergence figures `conv/...` (`batchmix.eval.convergence`, recomputed from history.csv so every run
uses the same smoothing), the validation-curve figures `conv/val/map/multi/...` (`val_convergence` of
val_history.csv, else convergence.json's; absent for runs made before validation was logged), and
`cfg/<dotted key>` for each config value that differs between runs.

`load_histories` / `load_val_histories`: every run's history.csv / val_history.csv stacked, with the
run, its ratio columns and seed in front, so curves group by ratio like the runs table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchmix.mixing.batch_types import batch_type_names
from batchmix.eval.convergence import (DEFAULT_TOLERANCE, DEFAULT_WINDOW, VAL_METRIC, convergence_summary, smoothed_curves,
                                  val_convergence)
from batchmix.mixing.ratio import COMPLEMENT_KEY
from batchmix.core.run_dir import RunDir, find_run_dirs, flatten

_RATIO_DECIMALS = 6  # shares are rounded for grouping: 0.30000000000000004 and 0.3 are one ratio


def ratio_columns() -> tuple[str, ...]:
    """`ratio_<type>` for every batch type, in registry order (mono, cross, multi, ...)."""
    return tuple(f"ratio_{name}" for name in batch_type_names())


def sort_columns() -> list[str]:
    """The order ratios are sorted in: every share but the complement (mono, multi, ...), then cross."""
    cols = ratio_columns()
    last = f"ratio_{COMPLEMENT_KEY}"
    return [c for c in cols if c != last] + [c for c in cols if c == last]


def ratio_label(*shares: float, digits: int = _RATIO_DECIMALS) -> str:
    """The shares in registry order joined as in `Ratio.label()`, e.g. `0.2/0.5/0.3`."""
    return "/".join(f"{round(float(v), digits):g}" for v in shares)


def _config_columns(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config as table cells: dotted keys, lists as JSON text, empty mappings left out."""
    flat = flatten({k: v for k, v in cfg.items() if k not in ("ratio", "seed")})
    return {k: json.dumps(v) if isinstance(v, (list, tuple)) else v for k, v in flat.items() if v != {}}


def _ratio_of(cfg: Mapping[str, Any]) -> dict[str, float]:
    """`{ratio_<type>: share}` of a run's config: NaN without a ratio, 0 for a type it leaves out."""
    ratio = cfg.get("ratio") or {}
    cols = ratio_columns()
    try:
        default = 0.0 if isinstance(ratio, Mapping) and ratio else math.nan
        return {c: round(float(ratio.get(c.removeprefix("ratio_"), default)), _RATIO_DECIMALS) for c in cols}
    except (TypeError, ValueError, AttributeError):
        return dict.fromkeys(cols, math.nan)


def _front(root: Path, run_dir: Path, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a run in every table: `run` (relative to `root`), its shares, `ratio` label and `seed`."""
    shares = _ratio_of(cfg)
    return {"run": run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name,
            **shares, "ratio": ratio_label(*shares.values()), "seed": cfg.get("seed")}


def load_runs(path: str | os.PathLike, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """One row per run under `path` (columns: see the module docstring). Empty frame if none."""
    root = Path(path)
    rows, configs = [], []
    for run_dir in find_run_dirs(root):
        rd = RunDir(run_dir)
        cfg = rd.read_config()
        metrics = rd.read_metrics()
        front = _front(root, run_dir, cfg)
        row: dict[str, Any] = {"run": front.pop("run"), "run_dir": str(run_dir.resolve()),
                               "status": "complete" if metrics else "incomplete", **front}
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        before = rd.read_metrics_before()
        row.update({f"before/{k}": v for k, v in before.items() if isinstance(v, (int, float)) and k.count("/") <= 1})
        history = rd.read_history()
        if history is not None:
            row.update(convergence_summary(history, window=window, tolerance=tolerance))
        row.update(_val_figures(rd))
        rows.append(row)
        configs.append(_config_columns(cfg))
    if not rows:
        return pd.DataFrame(columns=["run", "run_dir", "status", *ratio_columns(), "ratio", "seed"])
    runs = pd.DataFrame(rows)
    # Config values that differ between runs (a swept lr, a loss) become columns; constants do not.
    keys = sorted(set().union(*configs))
    varying = {f"cfg/{k}": [c.get(k) for c in configs] for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1}
    if varying:
        runs = pd.concat([runs, pd.DataFrame(varying)], axis=1)
    return runs


def _val_figures(rd: RunDir) -> dict[str, float]:
    """`conv/val/map/multi/...` of a run: from val_history.csv, else what convergence.json holds, else none."""
    val = rd.read_val_history()
    if val is not None:
        return val_convergence(val)
    prefix = f"conv/{VAL_METRIC}/"
    return {k: v for k, v in rd.read_convergence().items() if k.startswith(prefix)} if rd.convergence_file.is_file() else {}


def _stacked(path: str | os.PathLike, read, columns: list[str]) -> pd.DataFrame:
    """`read(RunDir)` of every run under `path` stacked, with `run`, ratio columns, `ratio` and `seed` in front."""
    root = Path(path)
    frames = []
    for run_dir in find_run_dirs(root):
        rd = RunDir(run_dir)
        table = read(rd)
        if table is None or table.empty:
            continue
        front = _front(root, run_dir, rd.read_config())
        frames.append(table.assign(**front)[[*front, *table.columns]])
    if not frames:
        return pd.DataFrame(columns=["run", *ratio_columns(), "ratio", "seed", *columns])
    return pd.concat(frames, ignore_index=True)


def load_histories(path: str | os.PathLike) -> pd.DataFrame:
    """Every run's history.csv stacked, with `run`, ratio columns, `ratio` and `seed` in front."""
    return _stacked(path, RunDir.read_history, ["step", "batch_type", "loss", "mse"])


def load_val_histories(path: str | os.PathLike) -> pd.DataFrame:
    """Every run's val_history.csv stacked (columns as `load_histories`); runs without one are left
    out, so a sweep made before validation was logged gives an empty frame."""
    return _stacked(path, RunDir.read_val_history, ["step", VAL_METRIC])


def smoothed_histories(histories: pd.DataFrame, window: int = DEFAULT_WINDOW) -> pd.DataFrame:
    """`convergence.smoothed_curves` of every run, with `run`, ratio columns and `seed` in front."""
    frames = []
    for run, hist in histories.groupby("run", sort=False):
        curves = smoothed_curves(hist, window)
        first = hist.iloc[0]
        frames.append(curves.assign(run=run, seed=first.get("seed"), ratio=first["ratio"],
                                    **{c: first[c] for c in ratio_columns()}))
    if not frames:
        return pd.DataFrame(columns=["run", "seed", "ratio", *ratio_columns(), "batch_type", "curve", "step", "value", "smoothed"])
    return pd.concat(frames, ignore_index=True)


def by_ratio(runs: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Seeds of one ratio pooled: per ratio `n` (runs), and `<col>` (mean) and `<col>/std` (sample
    std; NaN for a single seed) of each numeric column. Sorted by mono, then multi share (`sort_columns`)."""
    columns = [c for c in columns if c in runs.columns]
    keys = [*ratio_columns(), "ratio"]
    if runs.empty:
        return pd.DataFrame(columns=[*keys, "n", *columns])
    numeric = runs[keys + columns].copy()
    for c in columns:
        numeric[c] = pd.to_numeric(numeric[c], errors="coerce")
    grouped = numeric.groupby(keys, dropna=False, sort=False)
    out = grouped.size().rename("n").to_frame()
    if columns:
        out = out.join(grouped[columns].mean()).join(grouped[columns].std(ddof=1).add_suffix("/std"))
    out = out.reset_index()
    return out.sort_values(sort_columns(), ignore_index=True)


def sweep_shape(runs: pd.DataFrame) -> str:
    """'none' (no ratio), 'point' (one ratio), 'line' (all ratios on one line of the simplex, e.g. a
    `ratio.mono=...` sweep) or 'simplex' (>= 3 ratios not on a line)."""
    points = distinct_ratios(runs)
    if len(points) == 0:
        return "none"
    if len(points) == 1:
        return "point"
    if len(points) == 2:
        return "line"
    centred = points - points.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return "line" if singular[1] <= 1e-9 * max(singular[0], 1e-12) else "simplex"


def distinct_ratios(runs: pd.DataFrame) -> np.ndarray:
    cols = list(ratio_columns())
    if runs.empty or not set(cols) <= set(runs.columns):
        return np.zeros((0, len(cols)))
    return runs[cols].astype(float).dropna().drop_duplicates().to_numpy()


def line_axis(runs: pd.DataFrame) -> str:
    """For a 'line' sweep: the ratio column that varies most (ties: `sort_columns` order, mono first)."""
    cols = list(ratio_columns())
    points = distinct_ratios(runs)
    spans = points.max(axis=0) - points.min(axis=0) if len(points) else np.zeros(len(cols))
    order = [cols.index(c) for c in sort_columns()]
    best = max(order, key=lambda i: (round(float(spans[i]), 9), -order.index(i)))
    return cols[best]


def used_ratio_columns(runs: pd.DataFrame) -> list[str]:
    """The ratio columns some run gives a share > 0."""
    points = distinct_ratios(runs)
    return [c for c, top in zip(ratio_columns(), points.max(axis=0)) if top > 0] if len(points) else []


def triangle_columns(runs: pd.DataFrame) -> list[str] | None:
    """The three ratio columns of a triangle (ternary) map, or None: a triangle needs a 'simplex'
    sweep whose ratios use exactly three batch types (any other number: plots that work for N)."""
    used = used_ratio_columns(runs)
    return used if len(used) == 3 and sweep_shape(runs) == "simplex" else None
