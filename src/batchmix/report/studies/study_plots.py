"""The ratio study's figures (batchmix.report.studies.ratio_study), drawn from results.csv / curves.csv frames.

- `plot_ternary_fits`: one simplex panel per metric, the Scheffé fit's surface as the background
  and the ratios' seed means as points on the same colour scale;
- `plot_study_curves` / `plot_study_val_curves`: the downsampled training curves per batch type and
  the val curves, one line per run, coloured by the run's ratio (`plots.barycentric_color`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.tri import Triangulation

from batchmix.report.aggregate import by_ratio
from batchmix.report.studies.mixture_model import simplex_points
from batchmix.report.plots import _draw_simplex, barycentric_color, ternary_xy

SURFACE_STEP = 0.02  # the fine simplex grid the fitted surface is drawn on


def plot_ternary_fits(runs: pd.DataFrame, panels: Sequence[tuple], columns: int = 3) -> Figure:
    """`panels`: (metric, fit) pairs, metric with .column, .label, .maximize (ratio_study.FitMetric), fit a
    MixtureFit over three shares. Colours: yellow = better."""
    names = panels[0][1].names
    corners = [n.removeprefix("ratio_") for n in names]
    grid = simplex_points(3, SURFACE_STEP)
    gx, gy = ternary_xy(*grid.T)
    tri = Triangulation(gx, gy)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(5.6 * columns, 5.0 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (metric, fit) in zip(axes, panels):
        surface = fit.predict(grid)["mean"].to_numpy()
        means = by_ratio(runs, [metric.column])
        px, py = ternary_xy(*(means[n] for n in names))
        values = means[metric.column].to_numpy(float)
        both = np.concatenate([surface, values[np.isfinite(values)]])
        norm = Normalize(both.min(), both.max() if both.max() > both.min() else both.min() + 1e-9)
        cmap = colormaps["viridis" if metric.maximize else "viridis_r"]
        _draw_simplex(ax, corners)
        ax.tricontourf(tri, surface, levels=14, cmap=cmap, norm=norm, zorder=0)
        sc = ax.scatter(px, py, c=values, cmap=cmap, norm=norm, s=90, edgecolors="white", linewidths=1.2, zorder=4)
        fig.colorbar(sc, ax=ax, shrink=0.75)
        ax.set_title(f"{metric.label}\n(R² {fit.fit.rsquared:.2f}; {'higher' if metric.maximize else 'lower'} = better)", fontsize=10)
    for ax in axes[len(panels):]:
        ax.axis("off")
    return fig


def _run_colors(runs: pd.DataFrame) -> dict[str, tuple]:
    names = [c for c in runs.columns if c.startswith("ratio_")][:3]
    return {r["run"]: barycentric_color(*(r[n] for n in names)) for _, r in runs.iterrows()}


def plot_study_curves(curves: pd.DataFrame, runs: pd.DataFrame, types: Sequence[str]) -> Figure:
    """Loss (top) and MSE (bottom) per batch type (columns), one line per grid run."""
    colors = _run_colors(runs)
    fig = Figure(figsize=(5.2 * len(types), 7.6), layout="constrained")
    axes = fig.subplots(2, len(types), squeeze=False, sharex=True)
    for row, curve in enumerate(("loss", "mse")):
        for col, batch_type in enumerate(types):
            ax = axes[row, col]
            part = curves[(curves["curve"] == curve) & (curves["batch_type"] == batch_type) & curves["run"].isin(colors)]
            for run, line in part.groupby("run", sort=False):
                ax.plot(line["step"], line["value"], color=colors[run], lw=0.9, alpha=0.8)
            ax.set_title(f"{batch_type} batches: {'InfoNCE loss' if curve == 'loss' else 'MSE'}", fontsize=10)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("step")
    return fig


def plot_study_val_curves(curves: pd.DataFrame, runs: pd.DataFrame,
                          keys: Sequence[str] = ("val/map/multi", "val/map/mono", "val/map/cross")) -> Figure:
    """The val curves of every grid run, one panel per metric."""
    colors = _run_colors(runs)
    fig = Figure(figsize=(5.2 * len(keys), 3.9), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        part = curves[(curves["curve"] == key) & curves["run"].isin(colors)]
        for run, line in part.groupby("run", sort=False):
            ax.plot(line["step"], line["value"], color=colors[run], lw=0.9, alpha=0.8, marker=".")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return fig
