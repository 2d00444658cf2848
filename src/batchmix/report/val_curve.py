"""The validation curve: a val metric (default `val/map/multi`) against the global step, one line per ratio.

Its own module because it reads a different file than the training curves (`val_history.csv`, one
row per validation, not per step) and needs no smoothing: each point is a full evaluation of the val
split, already an average over its queries. It is the curve the run's checkpoint and objective are
selected on, so it sits beside the loss / MSE curves: how fast a ratio gets accurate, not just how
fast its loss falls. Seeds of one ratio are pooled as in `plots` (line = mean, band = 1 std).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from batchmix.mixing.batch_types import batch_type_names
from batchmix.eval.convergence import VAL_METRIC
from batchmix.report.plots import colour_key, mean_band, ratio_colors


def val_curve_means(val_histories: pd.DataFrame, metric: str = VAL_METRIC) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per ratio label (plot order): (steps, mean over seeds, sample std) of `metric`; ratios without it left out."""
    if val_histories.empty or metric not in val_histories.columns:
        return {}
    rows = val_histories.dropna(subset=[metric])
    out = {}
    for ratio in ratio_colors(val_histories)[0]:
        sub = rows[rows["ratio"] == ratio]
        if not sub.empty:
            out[ratio] = mean_band(sub, metric)
    return out


def plot_val_curve(val_histories: pd.DataFrame, metric: str = VAL_METRIC) -> Figure:
    """`metric` at each validation against the global step (0 = the untrained model), one line per
    ratio (mean over seeds, band +-1 std); `val_histories` from `aggregate.load_val_histories`."""
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax = fig.subplots()
    curves = val_curve_means(val_histories, metric)
    if not curves:
        fig.suptitle(f"no {metric} in any run's val_history.csv")
        return fig
    colors, scale = ratio_colors(val_histories)
    for ratio, (x, mean, std) in curves.items():
        ax.plot(x, mean, color=colors[ratio], lw=1.6, marker="o", ms=3.5, label=ratio)
        if std.any():
            ax.fill_between(x, mean - std, mean + std, color=colors[ratio], alpha=0.15, lw=0)
    ax.set_xlabel("global step")
    ax.set_ylabel(f"{metric} (val split, higher = better)")
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="y", useOffset=False)
    if scale is not None:
        axis, norm = scale
        fig.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=f"{axis.removeprefix('ratio_')} share", shrink=0.8)
    else:
        fig.legend(*ax.get_legend_handles_labels(), title=f"ratio {'/'.join(batch_type_names())}\n{colour_key()}",
                   loc="outside right center", fontsize=9, title_fontsize=9)
    fig.suptitle(f"Validation {metric.removeprefix('val/')} by step, overlaid by ratio", fontsize=14)
    return fig
