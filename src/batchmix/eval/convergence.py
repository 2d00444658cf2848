"""Convergence figures of one run from its per-step `history.csv`, per batch type and overall.

Why a module of its own: the research question is how the mono : cross : multi ratio changes *how fast*
and *how far* the loss and the similarity MSE fall, so every run gets the same few numbers, computed
the same way, comparable across runs of different lengths.

Definitions (per batch type of `batchmix.mixing.batch_types` -- mono, cross, multi, ... -- plus any other type the
history holds, and `all` = every step; per curve `loss`, `mse`):

* x-axis: the global optimizer step of each batch (`history.step`), so a type that gets 20 % of the
  batches is measured on the same clock as one that gets 80 %.
* smoothed curve: exponential moving average over that type's own observations, bias-corrected
  (`pandas.Series.ewm(span=window, adjust=True)`; alpha = 2 / (window + 1); the same debiased EMA
  TensorBoard and W&B draw). Default `window` = 20 observations.
* `final`: the last value of the smoothed curve. This is *the* final loss / MSE of a batch type:
  training writes it into metrics.json as `train/<type>/<curve>_final` too.
* `last10` (`mean_of_last`, not part of the summary): the raw mean of a type's last 10 observations,
  the "last 10" column of the study tables.
* `steps_to_<p>pct` (p = 100 * tolerance, default 5): with smoothed values s_i at steps t_i and
  f = s_last, the band is |s - f| <= tolerance * |f|. k = the first index from which every later s_j
  lies in the band; the figure is t_k (steps taken before the curve settled for good; 0 = flat from
  the start). It is NaN -- "did not settle within the run" -- when the band holds for less than the
  last `min_settled` fraction (default 10 %) of the curve's step span t_last - t_first, because a
  curve that is still falling is always "within 5 % of its final value" at its last few points.
* `auc`: trapezoid area under the *raw* curve over steps divided by its step span (t_last - t_first),
  i.e. the mean height of the curve; a single observation gives its value. Raw, not smoothed: the
  integral already averages the noise, and the EMA's lag would bias it upwards on a falling curve.
* a batch type with no steps gives NaN for every figure, so tables across runs share columns.

Keys are flat: `conv/<type>/<curve>/<figure>`, e.g. `conv/mono/mse/steps_to_5pct`, `conv/all/loss/auc`.

Validation curve (`val_convergence`, from `<run>/val_history.csv`: one row per validation of the val
split, x = the global step, 0 = the untrained model when eval.before=true), for one metric where higher
is better (default `val/map/multi`):

* `final`: the value at the last validation -- the run's final val value. NaN when the run has no
  validation or the metric is absent, and then every figure below is NaN too.
* `step_to_<p>pct` (p = 100 * fraction, default 90 and 95): the first validated step whose value is
  >= fraction * final. Relative to the run's *own* final value, not an absolute mAP, so ratios that
  end at different accuracies are compared on how fast they get most of the way to where they end
  (an absolute threshold would call a ratio that never reaches it "never", and a low-ending one fast).
  Only as fine as the validation interval: the figure is always a step that was validated.
* `auc`: `area_under_curve` over the validated points (trapezoid over steps / step span = the curve's
  mean height; higher = more accurate over the whole run, not just at its end).

Keys: `conv/<metric>/<figure>`, e.g. `conv/val/map/multi/step_to_90pct`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from batchmix.mixing.batch_types import batch_type_names
from batchmix.core.errors import BatchmixError
from batchmix.eval.settings import VAL_SPLIT
from batchmix.core.run_dir import RunDir

ALL = "all"
CURVES = ("loss", "mse")
DEFAULT_WINDOW = 20
DEFAULT_TOLERANCE = 0.05
DEFAULT_MIN_SETTLED = 0.1
LAST_N = 10
VAL_METRIC = f"{VAL_SPLIT}/map/multi"
VAL_FRACTIONS = (0.9, 0.95)


def smooth(values: pd.Series | np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Bias-corrected EMA with span `window` (window=1: no smoothing)."""
    if window < 1:
        raise BatchmixError(f"smoothing window={window!r} must be >= 1 (observations; 1 = no smoothing)")
    return pd.Series(np.asarray(values, dtype=float)).ewm(span=window, adjust=True).mean().to_numpy()


def steps_to_within(steps: np.ndarray, smoothed: np.ndarray, tolerance: float = DEFAULT_TOLERANCE,
                    min_settled: float = DEFAULT_MIN_SETTLED) -> float:
    """First step t_k from which the smoothed curve stays within `tolerance` * |final| of its final
    value (see the module docstring); NaN if empty or it settles only in the last `min_settled` of the span."""
    steps, smoothed = np.asarray(steps, dtype=float), np.asarray(smoothed, dtype=float)
    if len(smoothed) == 0:
        return math.nan
    final = smoothed[-1]
    outside = np.flatnonzero(np.abs(smoothed - final) > tolerance * abs(final))
    k = 0 if len(outside) == 0 else int(outside[-1]) + 1
    span = steps[-1] - steps[0]
    if steps[-1] - steps[k] < min_settled * span:
        return math.nan
    return float(steps[k])


def area_under_curve(steps: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area over steps / step span = the curve's mean height (one point: its value)."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan
    span = steps[-1] - steps[0]
    if span <= 0:
        return float(values.mean())
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 renamed trapz
    return float(trapezoid(values, steps) / span)


def _series(history: pd.DataFrame, batch_type: str, curve: str) -> tuple[np.ndarray, np.ndarray]:
    part = history if batch_type == ALL else history[history["batch_type"] == batch_type]
    part = part[["step", curve]].dropna().sort_values("step", kind="stable")
    part = part[np.isfinite(part[curve].to_numpy(dtype=float))]
    return part["step"].to_numpy(dtype=float), part[curve].to_numpy(dtype=float)


def _check(history: pd.DataFrame) -> None:
    missing = {"step", "batch_type", *CURVES} - set(history.columns)
    if missing:
        raise BatchmixError(f"history has no column(s) {sorted(missing)}; expected batchmix's history.csv (step, batch_type, loss, mse, ...)")


def curve_types(history: pd.DataFrame) -> list[str]:
    """The registered batch types, then any other type the history holds (sorted), then `all`."""
    names = batch_type_names()
    extra = sorted({str(t) for t in history["batch_type"].dropna()} - set(names) - {ALL})
    return [*names, *extra, ALL]


def smoothed_curves(history: pd.DataFrame, window: int = DEFAULT_WINDOW) -> pd.DataFrame:
    """Long table of every curve: columns batch_type (each type of `curve_types`), curve (loss/mse),
    step, value (raw), smoothed. Types without steps have no rows."""
    _check(history)
    frames = []
    for btype in curve_types(history):
        for curve in CURVES:
            steps, values = _series(history, btype, curve)
            if len(values):
                frames.append(pd.DataFrame({"batch_type": btype, "curve": curve, "step": steps, "value": values,
                                            "smoothed": smooth(values, window)}))
    if not frames:
        return pd.DataFrame(columns=["batch_type", "curve", "step", "value", "smoothed"])
    return pd.concat(frames, ignore_index=True)


def figure_name(tolerance: float) -> str:
    return f"steps_to_{100 * tolerance:g}pct"


def convergence_summary(history: pd.DataFrame, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE,
                        min_settled: float = DEFAULT_MIN_SETTLED) -> dict[str, float]:
    """`conv/<type>/<curve>/{final, auc, steps_to_<p>pct}` for every batch type and `all` (NaN if absent)."""
    _check(history)
    if not 0 < tolerance < 1:
        raise BatchmixError(f"convergence tolerance={tolerance!r} must be a fraction in (0, 1), e.g. 0.05 for 5 %")
    out: dict[str, float] = {}
    threshold_key = figure_name(tolerance)
    for btype in curve_types(history):
        for curve in CURVES:
            steps, values = _series(history, btype, curve)
            prefix = f"conv/{btype}/{curve}"
            if len(values) == 0:
                out.update({f"{prefix}/final": math.nan, f"{prefix}/auc": math.nan, f"{prefix}/{threshold_key}": math.nan})
                continue
            smoothed = smooth(values, window)
            out[f"{prefix}/final"] = float(smoothed[-1])
            out[f"{prefix}/auc"] = area_under_curve(steps, values)
            out[f"{prefix}/{threshold_key}"] = steps_to_within(steps, smoothed, tolerance, min_settled)
    return out


def mean_of_last(history: pd.DataFrame, n: int = LAST_N) -> dict[str, float]:
    """`conv/<type>/<curve>/last<n>`: the raw mean of each batch type's last `n` observations (types the
    history holds). Not a type's final value (`final`): the study's "last 10" column, kept as it was."""
    _check(history)
    out: dict[str, float] = {}
    for btype in dict.fromkeys(history["batch_type"]):
        for curve in CURVES:
            _, values = _series(history, btype, curve)
            if len(values):
                out[f"conv/{btype}/{curve}/last{n}"] = float(values[-n:].mean())
    return out


def fraction_name(fraction: float) -> str:
    """`step_to_90pct` for 0.9: the key of a `val_convergence` threshold."""
    return f"step_to_{100 * fraction:g}pct"


def val_convergence(val_history: pd.DataFrame | None, metric: str = VAL_METRIC,
                    fractions: tuple[float, ...] = VAL_FRACTIONS) -> dict[str, float]:
    """`conv/<metric>/{final, step_to_<p>pct..., auc}` of a val_history.csv (see the module docstring);
    every figure NaN when there is no history, no such metric column, or its final value is NaN."""
    prefix = f"conv/{metric}"
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise BatchmixError(f"val convergence fraction={fraction!r} must be in (0, 1], e.g. 0.9 for 90 % of the final value")
    out = {f"{prefix}/final": math.nan, **{f"{prefix}/{fraction_name(f)}": math.nan for f in fractions}, f"{prefix}/auc": math.nan}
    if val_history is None or val_history.empty or metric not in val_history.columns or "step" not in val_history.columns:
        return out
    part = val_history[["step", metric]].sort_values("step", kind="stable")
    steps, values = part["step"].to_numpy(dtype=float), pd.to_numeric(part[metric], errors="coerce").to_numpy(dtype=float)
    final = values[-1]
    if not np.isfinite(final):
        return out
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    out[f"{prefix}/final"] = float(final)
    for fraction in fractions:
        reached = np.flatnonzero(values >= fraction * final)
        out[f"{prefix}/{fraction_name(fraction)}"] = float(steps[reached[0]]) if len(reached) else math.nan
    out[f"{prefix}/auc"] = area_under_curve(steps, values)
    return out


def write_convergence(run_dir: str | os.PathLike, history: pd.DataFrame | None = None,
                      val_history: pd.DataFrame | None = None, **kwargs) -> dict[str, float]:
    """Write `<run_dir>/convergence.json` (NaN as null) from `history` or `<run_dir>/history.csv`;
    returns the figures (`convergence_summary`; kwargs: window, tolerance, min_settled), plus
    `val_convergence` of `val_history` (read from `<run_dir>/val_history.csv` too when history is
    read from disk; a run without one gets no val keys)."""
    run = RunDir(run_dir)
    if history is None:
        history = run.read_history()
        if history is None:
            raise BatchmixError(f"{run.history_file} does not exist or is empty; convergence needs a run dir with batchmix's history.csv")
        if val_history is None:
            val_history = run.read_val_history()
    summary = convergence_summary(history, **kwargs)
    if val_history is not None:
        summary.update(val_convergence(val_history))
    run.write_convergence(summary)
    return summary
