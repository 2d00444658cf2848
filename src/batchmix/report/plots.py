"""Every figure of every report (report.html, a sweep's README, the ratio study's), each from a DataFrame.

Three palettes, each meaning one thing: a *batch type* has the registry's colour (`batch_type_palette`: mono
red, cross blue, multi green, a registered type its own); an *evaluation setting* has `SETTING_PALETTE`,
hues no built-in batch type uses, so "mono" never means two things by colour; a *ratio* has `ratio_color`,
the mix of `RATIO_CORNERS` (grey, purple, gold, ...: no mix comes near a built-in batch type's colour) by its
shares, keyed beside the panels by a triangle of the ratios (a legend naming them where they span no triangle).
Every function returns a `matplotlib.figure.Figure` built without pyplot (no global state, no GUI
backend: PNGs render with Agg on any machine, and a notebook displays the Figure object). Seeds of
one ratio are pooled: lines/points are means, bands/error bars one sample standard deviation.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from matplotlib.tri import Triangulation

from batchmix.mixing.batch_types import batch_type_names, get_batch_type
from batchmix.eval.convergence import ALL, DEFAULT_WINDOW, VAL_METRIC
from batchmix.core.errors import BatchmixError
from batchmix.eval.settings import EVAL_SETTINGS
from batchmix.report.aggregate import (by_ratio, line_axis, ratio_columns, smoothed_histories, sort_columns, sweep_shape,
                                       triangle_columns, used_ratio_columns)
from batchmix.report.optuna_trials import StudyTable
from batchmix.report.studies.mixture_model import simplex_points

CURVE_LABELS = {"loss": "training loss", "mse": "similarity MSE"}
# The evaluation settings' colours (orange, brown, black): apart from every batch type's red / blue / green.
SETTING_PALETTE = {"mono": "#ff7f0e", "cross": "#8c564b", "multi": "#222222"}
METRIC_LABELS = {"map": "mAP", "mrr": "MRR", "ndcg@10": "nDCG@10"}
SQRT3_2 = math.sqrt(3) / 2


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})  # no matplotlib version in the file: same bytes across releases
    return buf.getvalue()


def _names_label() -> str:
    """`mono/cross/multi[/...]`: the order of the shares in a ratio label."""
    return "/".join(batch_type_names())


def batch_type_palette() -> dict[str, object]:
    """Each registered batch type's colour (`BatchType.color`), in registry order: the batch-type palette."""
    return {name: get_batch_type(name).color for name in batch_type_names()}


# A ratio's colour, in every figure that colours a ratio (the sweep report's curves, the ratio study's): its
# place on the simplex, the mix of one corner colour per batch type (registry order) by its shares. The corners
# are none of the batch types' colours and no mix of them comes within 0.3 RGB of mono red, cross blue or multi
# green (tests/test_report_ratio_colours.py), so in a panel of one batch type a line's colour never reads as a
# batch type, as a mix of the batch types' own colours would.
RATIO_CORNERS = ("#5a5a5a", "#7b3294", "#e0a800", "#e78ac3", "#8dd3c7")
RATIO_CORNER_WORDS = ("grey", "purple", "gold", "pink", "teal")


def ratio_color(*shares: float) -> tuple[float, float, float]:
    """The colour of the ratio with these `shares` (registry order): the mix of `RATIO_CORNERS` by its shares,
    so near ratios get near colours and a pure ratio its corner's."""
    shares = np.asarray(shares, dtype=float)
    beyond = np.flatnonzero(shares[len(RATIO_CORNERS):] > 0)
    if len(beyond):
        raise BatchmixError(f"ratio {'/'.join(f'{v:g}' for v in shares)} gives a share to batch type "
                            f"{len(RATIO_CORNERS) + int(beyond[0]) + 1} (registry order), but ratio colours mix only "
                            f"{len(RATIO_CORNERS)} corner colours; add one to batchmix.report.plots.RATIO_CORNERS")
    corners = np.array([to_rgb(c) for c in RATIO_CORNERS[:len(shares)]])
    return tuple(float(c) for c in np.clip(shares[:len(corners)] @ corners, 0, 1))


def ratio_colors(runs: pd.DataFrame) -> tuple[list[str], dict[str, tuple[float, float, float]]]:
    """(the share columns some ratio uses, {ratio label: `ratio_color`}) of rows with `ratio` and `ratio_<type>`
    columns (runs, histories), in `sort_columns` order: the lines' order and colours of every ratio figure."""
    columns = [c for c in ratio_columns() if c in runs.columns]
    keys = runs[[*columns, "ratio"]].drop_duplicates("ratio").sort_values([c for c in sort_columns() if c in columns])
    return used_ratio_columns(runs), {r["ratio"]: ratio_color(*r[columns].to_numpy(float)) for _, r in keys.iterrows()}


def ratio_key_words(runs: pd.DataFrame) -> str:
    """`grey = mono, purple = cross, gold = multi`: the corner colours of the runs' used batch types, for captions."""
    names = list(ratio_columns())
    return ", ".join(f"{RATIO_CORNER_WORDS[names.index(n)]} = {n.removeprefix('ratio_')}" for n in ratio_colors(runs)[0])


def _seeds_words(runs: pd.DataFrame) -> str:
    """`3 seeds` (or `1–3 seeds` when ratios differ): how many runs each line averages."""
    n = runs.groupby("ratio")["run"].nunique()
    return f"{n.min()} seed{'s' if n.max() > 1 else ''}" if n.min() == n.max() else f"{n.min()}–{n.max()} seeds"


def ratio_key(ax, runs: pd.DataFrame, names: list[str], colors: dict[str, tuple], extra: Sequence = ()) -> None:
    """The colour key beside the panels: the ratios as points on the triangle, coloured as their lines (a
    legend of ratio labels when the ratios do not span a triangle), then what a line, a band (and `extra`
    handles) mean."""
    shown = runs.drop_duplicates("ratio").set_index("ratio").loc[list(colors)]
    several = runs.groupby("ratio")["run"].nunique().max() > 1
    what = [Line2D([], [], color="0.3", lw=1.8, label=f"mean over {_seeds_words(runs)}"),
            Patch(color="0.3", alpha=0.2, lw=0, label="± 1 sample std over seeds"), *extra] if several else [
            Line2D([], [], color="0.3", lw=1.8, label="one run (seed) per ratio"), *extra]
    if triangle_columns(runs) is not None:
        left, right, top = (n.removeprefix("ratio_") for n in names)
        ax.plot([0, 1, 0.5, 0], [0, 0, SQRT3_2, 0], color="0.6", lw=0.8, zorder=1)
        x, y = ternary_xy(*(shown[n] for n in names))
        ax.scatter(x, y, c=list(colors.values()), s=110, edgecolors="white", linewidths=1.0, zorder=5, label="ratio key")
        for xi, yi, ratio in zip(x, y, shown.index):
            ax.annotate(ratio, (xi, yi), xytext=(0, -7.5), textcoords="offset points", ha="center", va="top", fontsize=7,
                        color="0.25", zorder=6)
        ax.text(0, -0.1, left, ha="center", va="top", fontsize=11, weight="bold")
        ax.text(1, -0.1, right, ha="center", va="top", fontsize=11, weight="bold")
        ax.text(0.5, SQRT3_2 + 0.06, top, ha="center", va="bottom", fontsize=11, weight="bold")
        ax.set_xlim(-0.14, 1.14)
        ax.set_ylim(-0.2, SQRT3_2 + 0.14)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"line colour = ratio\n{_names_label()} shares", fontsize=11)
        ax.legend(handles=what, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=9, frameon=False)
    else:  # the ratios' legend (the axes' own), and below it what a line and a band are (its grey is no ratio's line)
        ax.axis("off")
        ax.add_artist(ax.legend(handles=what, loc="upper center", bbox_to_anchor=(0.5, 0.46), fontsize=9, frameon=False))
        handles = [Line2D([], [], color=c, lw=2.2, label=r) for r, c in colors.items()]
        ax.legend(handles=handles, title=f"line colour = ratio {_names_label()}\n({ratio_key_words(runs)})",
                  loc="lower center", bbox_to_anchor=(0.5, 0.5), fontsize=9, title_fontsize=10)


def _key_layout(fig: Figure, rows: int, columns: int, sharey: bool, key_width: float = 1) -> tuple[np.ndarray, object]:
    """`rows` x `columns` curve panels (x shared; y shared along a row if `sharey`) and the key's axes in a
    last column spanning every row."""
    grid = fig.add_gridspec(rows, columns + 1, width_ratios=[1] * columns + [key_width])
    axes = np.empty((rows, columns), dtype=object)
    for r in range(rows):
        for c in range(columns):
            axes[r, c] = fig.add_subplot(grid[r, c], sharex=axes[0, 0] if (r or c) else None,
                                         sharey=axes[r, 0] if (sharey and c) else None)
    return axes, fig.add_subplot(grid[:, -1])


def _means_words(runs: pd.DataFrame) -> str:
    """What a line and its band are, for a suptitle: `each ratio's mean over 3 seeds, band ± 1 sample std`."""
    if runs.groupby("ratio")["run"].nunique().max() > 1:
        return f"each ratio's mean over {_seeds_words(runs)}, band ± 1 sample std"
    return "one run per ratio"


def mean_band(curves: pd.DataFrame, column: str = "smoothed") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds (`run`s) of one ratio on a common step grid (their overlap; linear interpolation): step, mean, std."""
    runs = [g.sort_values("step") for _, g in curves.groupby("run", sort=False)]
    if len(runs) == 1:
        only = runs[0]
        return only["step"].to_numpy(float), only[column].to_numpy(float), np.zeros(len(only))
    lo = max(g["step"].min() for g in runs)
    hi = min(g["step"].max() for g in runs)
    grid = np.unique(np.concatenate([g["step"].to_numpy(float) for g in runs]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    if len(grid) == 0:
        return np.array([]), np.array([]), np.array([])
    stack = np.vstack([np.interp(grid, g["step"].to_numpy(float), g[column].to_numpy(float)) for g in runs])
    return grid, stack.mean(axis=0), stack.std(axis=0, ddof=1)


def _band(ax, x: np.ndarray, mean: np.ndarray, std: np.ndarray, color, alpha: float = 0.15, **line) -> None:
    """One ratio's mean line with its ±1 std band (none for a single seed; `alpha`: lighter where many overlap)."""
    ax.plot(x, mean, color=color, lw=1.6, **line)
    if std.any():
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=alpha, lw=0)


def plot_curves(histories: pd.DataFrame, curve: str = "mse", window: int = DEFAULT_WINDOW) -> Figure:
    """Smoothed `curve` (loss or mse) over global steps, one panel per batch type (+ all steps), one line
    per ratio (mean over seeds, band ± 1 sample std), coloured by `ratio_colors` and keyed beside the panels."""
    if curve not in CURVE_LABELS:
        raise BatchmixError(f"curve={curve!r} is not one of {list(CURVE_LABELS)}")
    panels = (*batch_type_names(), ALL)
    rows = math.ceil(len(panels) / 2)
    fig = Figure(figsize=(16, 4.25 * rows), layout="constrained")
    label = CURVE_LABELS[curve]
    if histories.empty:
        fig.suptitle("no history.csv in any run")
        return fig
    grid, key = _key_layout(fig, rows, 2, sharey=False, key_width=0.85)
    axes = grid.ravel()
    for ax in axes[len(panels):]:  # an odd number of panels leaves one cell empty
        ax.set_visible(False)
    axes = axes[:len(panels)]
    curves = smoothed_histories(histories, window)
    curves = curves[curves["curve"] == curve]
    names, colors = ratio_colors(histories)
    for ax, btype in zip(axes, panels):
        part = curves[curves["batch_type"] == btype]
        for ratio in colors:
            sub = part[part["ratio"] == ratio]
            if sub.empty:
                continue
            _band(ax, *mean_band(sub), colors[ratio], label=ratio)
        ax.set_title(f"{btype} batches ({get_batch_type(btype).label})" if btype != ALL else "all batches", fontsize=12)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
        if part.empty:
            ax.text(0.5, 0.5, f"no {btype} batches in any run", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_ylabel(f"{label} (EMA, span {window})")
        ax.tick_params(labelbottom=False)
    for ax in axes[-2:]:  # the bottom panel of each column (an empty cell may sit below the second)
        ax.set_xlabel("global step")
        ax.tick_params(labelbottom=True)
    ratio_key(key, histories, names, colors)
    fig.suptitle(f"{label[0].upper()}{label[1:]} per batch type: {_means_words(histories)}", fontsize=14)
    return fig


# The validation curve (val_history.csv, one row per validation): no smoothing, each point is a whole val split.


def plot_val_curve(val_histories: pd.DataFrame, metric: str = VAL_METRIC) -> Figure:
    """`metric` at each validation against the global step (0 = the untrained model), one line per ratio
    (mean over seeds, band ± 1 sample std) coloured by `ratio_colors` and keyed beside the panel;
    `val_histories` from `aggregate.load_val_histories`."""
    fig = Figure(figsize=(13, 6), layout="constrained")  # room above the key's title: the triangle keeps its aspect
    rows = val_histories.dropna(subset=[metric]) if metric in val_histories.columns else val_histories.iloc[:0]
    if rows.empty:
        fig.suptitle(f"no {metric} in any run's val_history.csv")
        return fig
    grid, key = _key_layout(fig, 1, 1, sharey=False, key_width=0.6)
    ax = grid[0, 0]
    names, colors = ratio_colors(rows)
    for ratio in colors:
        _band(ax, *mean_band(rows[rows["ratio"] == ratio], metric), colors[ratio], label=ratio, marker="o", ms=3.5)
    ax.set_xlabel("global step (0 = the untrained model)")
    ax.set_ylabel(f"{metric} (val split, higher = better)")
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="y", useOffset=False)
    ratio_key(key, rows, names, colors)
    fig.suptitle(f"Validation {metric.removeprefix('val/')} by step: {_means_words(rows)}", fontsize=14)
    return fig


def plot_final_vs_ratio(runs: pd.DataFrame, settings: Sequence[str] = EVAL_SETTINGS, metric: str = "map",
                        bias: str = "bias/rank_distance") -> Figure:
    """Final `<metric>/<setting>` for each evaluation setting (mono, cross, multi) against the ratio
    (+ the bias metric in a second panel).

    Line sweeps: x = the varying share. Other sweeps: one row per ratio, sorted by `<metric>/multi`."""
    cols = [f"{metric}/{s}" for s in settings if f"{metric}/{s}" in runs.columns]
    shown = METRIC_LABELS.get(metric, metric)
    has_bias = bias in runs.columns and runs[bias].notna().any()
    table = by_ratio(runs[runs["status"] == "complete"] if "status" in runs else runs, [*cols, bias])
    shape = sweep_shape(runs)
    if shape == "line":
        axis = line_axis(runs)
        table = table.sort_values(axis)
        fig = Figure(figsize=(13, 4.8), layout="constrained")
        axes = fig.subplots(1, 2 if has_bias else 1, squeeze=False).ravel()
        x = table[axis].to_numpy(float)
        for col in cols:
            setting = col.split("/")[-1]
            axes[0].errorbar(x, table[col], yerr=table[f"{col}/std"].fillna(0), marker="o", capsize=3, lw=1.8,
                             color=SETTING_PALETTE.get(setting), label=f"{shown} {setting}")
        axes[0].set_ylabel(f"final {shown} (held-out)")
        axes[0].legend()
        fixed = [f"{c.removeprefix('ratio_')} = {table[c].iloc[0]:g}" for c in ratio_columns() if c != axis and table[c].nunique() == 1]
        xlabel = f"{axis.removeprefix('ratio_')} share" + (f"  ({', '.join(fixed)})" if fixed else "")
        if has_bias:
            axes[1].errorbar(x, table[bias], yerr=table[f"{bias}/std"].fillna(0), marker="s", capsize=3, color="#7f3c8d",
                             label=bias.split("/")[-1].replace("_", " "))
            axes[1].set_ylabel(f"{bias} (lower = less same-language bias)")
            axes[1].legend()
        for ax in axes:
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="y", useOffset=False)
        fig.suptitle(f"Final {shown} vs ratio{_error_bar_words(table)}", fontsize=14)
        return fig
    order = table.sort_values(cols[-1] if cols else "ratio", ascending=True)
    height = max(3.5, 0.42 * len(order) + 1.6)
    fig = Figure(figsize=(13, height), layout="constrained")
    axes = fig.subplots(1, 2 if has_bias else 1, squeeze=False, sharey=True,
                        gridspec_kw={"width_ratios": [2, 1] if has_bias else [1]}).ravel()
    y = np.arange(len(order))
    offsets = np.linspace(-0.22, 0.22, max(len(cols), 1))
    for off, col in zip(offsets, cols):
        setting = col.split("/")[-1]
        axes[0].errorbar(order[col], y + off, xerr=order[f"{col}/std"].fillna(0), fmt="o", capsize=2,
                         color=SETTING_PALETTE.get(setting), label=f"{shown} {setting}")
    axes[0].set_yticks(y, [f"{r}  (n={n})" if n > 1 else r for r, n in zip(order["ratio"], order["n"])])
    axes[0].set_ylabel(f"ratio {_names_label()}")
    axes[0].set_xlabel(f"final {shown} (held-out)")
    axes[0].legend(loc="best")
    if has_bias:
        axes[1].errorbar(order[bias], y, xerr=order[f"{bias}/std"].fillna(0), fmt="s", capsize=2, color="#7f3c8d",
                         label=bias.split("/")[-1].replace("_", " "))
        axes[1].set_xlabel(f"{bias} (lower = less bias)")
        axes[1].legend(loc="best")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", useOffset=False)
    fig.suptitle(f"Final {shown} per ratio, sorted by {cols[-1] if cols else 'ratio'}{_error_bar_words(table)}", fontsize=14)
    return fig


def _error_bar_words(table: pd.DataFrame) -> str:
    """` (points: mean over 3 seeds, bars ± 1 sample std)` for a `by_ratio` table whose ratios have several seeds."""
    n = table["n"].astype(int) if len(table) else pd.Series([0])
    if n.max() <= 1:
        return " (one run per ratio)" if len(table) else ""
    seeds = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
    return f" (points: mean over {seeds} seeds, bars ± 1 sample std)"


def ternary_xy(a, b, c) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric (a, b, c) -> 2-D: corners a (0, 0), b (1, 0), c (1/2, sqrt(3)/2); for a mono/cross/multi
    sweep a = mono, b = cross, c = multi.

    Written by hand because it is two lines; a ternary-plot package would be a dependency for that."""
    a, b, c = (np.asarray(v, dtype=float) for v in (a, b, c))
    total = a + b + c
    return (b + 0.5 * c) / total, SQRT3_2 * c / total


def _draw_simplex(ax, corners: Sequence[str], step: float = 0.25) -> None:
    """The triangle with its grid, share labels and corner names (left, right, top)."""
    left, right, top = corners
    ax.plot([0, 1, 0.5, 0], [0, 0, SQRT3_2, 0], color="0.2", lw=1.2, zorder=3)
    for v in np.arange(step, 1, step):
        for a, b in (((v, 1 - v, 0), (v, 0, 1 - v)), ((0, v, 1 - v), (1 - v, v, 0)), ((1 - v, 0, v), (0, 1 - v, v))):
            xs, ys = ternary_xy(*np.array([a, b]).T)
            ax.plot(xs, ys, color="0.75", lw=0.6, zorder=1)
        # share labels outside each edge: bottom = right corner's share, right = top's, left = left's
        for point, (dx, dy), ha, va in (((1 - v, v, 0), (0, -0.05), "center", "top"),
                                        ((0, 1 - v, v), (0.05, 0), "left", "center"),
                                        ((v, 0, 1 - v), (-0.05, 0), "right", "center")):
            x, y = ternary_xy(*point)
            ax.text(x + dx, y + dy, f"{v:g}", ha=ha, va=va, fontsize=8, color="0.35")
    ax.text(-0.04, -0.03, left, ha="right", va="top", fontsize=12, weight="bold")
    ax.text(1.04, -0.03, right, ha="left", va="top", fontsize=12, weight="bold")
    ax.text(0.42, SQRT3_2, top, ha="right", va="center", fontsize=12, weight="bold")
    ax.text(0.5, -0.12, f"{right} share →", ha="center", va="top", fontsize=9, color="0.35")
    ax.text(0.86, 0.5, f"{top} share →", ha="center", va="center", fontsize=9, color="0.35", rotation=-60)
    ax.text(0.14, 0.5, f"← {left} share", ha="center", va="center", fontsize=9, color="0.35", rotation=60)
    ax.set_xlim(-0.2, 1.2)
    ax.set_ylim(-0.18, SQRT3_2 + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")


def plot_ternary(runs: pd.DataFrame, values: Sequence[str] = ("map/multi", "bias/rank_distance"),
                 lower_is_better: Sequence[str] = ("bias/rank_distance",)) -> Figure:
    """One simplex panel per metric: points at each ratio (mean over seeds, value printed), coloured by
    value, with a linearly interpolated field (`tricontourf`) between them. Colours: yellow = better.
    Needs a sweep over exactly three batch types (`aggregate.triangle_columns`): the triangle's corners."""
    values = [v for v in values if v in runs.columns and runs[v].notna().any()]
    if not values:
        raise BatchmixError("no metric to draw on the simplex; expected e.g. map/multi in metrics.json")
    corners = triangle_columns(runs)
    if corners is None:
        raise BatchmixError("a triangle map needs ratios spread over exactly three batch types; "
                            "use plot_final_vs_ratio for other sweeps")
    table = by_ratio(runs, values)
    fig = Figure(figsize=(6.5 * len(values), 6.2), layout="constrained")
    axes = fig.subplots(1, len(values), squeeze=False).ravel()
    x, y = ternary_xy(*(table[c] for c in corners))
    for ax, value in zip(axes, values):
        cmap = colormaps["viridis_r" if value in lower_is_better else "viridis"]
        z = table[value].to_numpy(float)
        ok = np.isfinite(z)
        norm = Normalize(np.nanmin(z), np.nanmax(z) if np.nanmax(z) > np.nanmin(z) else np.nanmin(z) + 1e-9)
        _draw_simplex(ax, [c.removeprefix("ratio_") for c in corners])
        if ok.sum() >= 3 and sweep_shape(table[ok]) == "simplex":
            tri = Triangulation(x[ok], y[ok])
            ax.tricontourf(tri, z[ok], levels=12, cmap=cmap, norm=norm, alpha=0.55, zorder=0)
        sc = ax.scatter(x[ok], y[ok], c=z[ok], cmap=cmap, norm=norm, s=120, edgecolors="black", linewidths=0.8, zorder=4)
        if ok.sum() <= 40:
            for xi, yi, zi in zip(x[ok], y[ok], z[ok]):
                ax.annotate(f"{zi:.3f}", (xi, yi), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8.5,
                            zorder=5, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
        fig.colorbar(sc, ax=ax, shrink=0.7, label=value + ("  (lower = better)" if value in lower_is_better else "  (higher = better)"))
        ax.set_title(f"{value} over the ratio simplex", fontsize=13)
    return fig


def _better(direction: str) -> str:
    return "↑ better" if direction.startswith("max") else "↓ better"


def plot_optuna_history(study: StudyTable) -> Figure:
    """Objective value per trial number, with the best value so far (one panel per objective)."""
    n = len(study.objectives)
    fig = Figure(figsize=(13, 4.2 * n), layout="constrained")
    axes = fig.subplots(n, 1, squeeze=False, sharex=True).ravel()
    done = study.completed()
    counts = study.trials["state"].value_counts()
    for ax, name, direction in zip(axes, study.objectives, study.directions):
        ax.scatter(done["number"], done[name], s=28, color="#1f77b4", label="completed trial", zorder=3)
        if len(done):
            best = done[name].cummax() if direction.startswith("max") else done[name].cummin()
            ax.step(done["number"], best, where="post", color="#d62728", lw=1.8, label="best so far")
        for number in study.trials.loc[study.trials["state"] == "PRUNED", "number"]:
            ax.axvline(number, color="0.8", lw=0.8, zorder=0)
        ax.set_ylabel(f"{name} ({_better(direction)})")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best")
    axes[-1].set_xlabel("trial number" + (" (grey lines: pruned trials)" if counts.get("PRUNED", 0) else ""))
    states = ", ".join(f"{k.lower()} {v}" for k, v in counts.items())
    fig.suptitle(f"Optuna optimisation history{f' — {study.name}' if study.name else ''} ({states})", fontsize=14)
    return fig


def plot_pareto_front(study: StudyTable) -> Figure:
    """The first two objectives of every completed trial; the Pareto front highlighted, joined and
    labelled with its ratios."""
    if len(study.objectives) < 2:
        raise BatchmixError("a Pareto front needs a multi-objective study")
    xname, yname = study.objectives[:2]
    done = study.completed()
    front = done[done["number"].isin(study.pareto)].sort_values(xname)
    rest = done[~done["number"].isin(study.pareto)]
    fig = Figure(figsize=(10, 7), layout="constrained")
    ax = fig.subplots()
    ax.scatter(rest[xname], rest[yname], s=36, color="0.6", label="dominated trial", zorder=2)
    ax.plot(front[xname], front[yname], "-o", color="#d62728", ms=8, lw=1.5, label="Pareto front", zorder=3)
    # one label per point; trials with identical values share it
    for (x, y), same in front.groupby([xname, yname], sort=False):
        labels = [f"#{int(r['number'])}" + (f" {r['ratio']}" if isinstance(r.get("ratio"), str) and r.get("ratio") else "")
                  for _, r in same.iterrows()]
        ax.annotate("\n".join(labels), (x, y), xytext=(6, 6), textcoords="offset points", fontsize=9)
    ax.set_xlabel(f"{xname} ({_better(study.directions[0])})")
    ax.set_ylabel(f"{yname} ({_better(study.directions[1])})")
    ax.ticklabel_format(useOffset=False)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(f"Pareto front: {len(front)} of {len(done)} completed trials", fontsize=14)
    return fig


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


# The ratio study's curve figures (one mean line per ratio, 15 of them on the 0.25 grid), coloured and keyed as
# every ratio figure (`ratio_colors`, `ratio_key`).


def study_ratio_means(curves: pd.DataFrame, runs: pd.DataFrame, curve: str, batch_type: str | None = None,
                      start: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{ratio: (step, mean, sample std)} of one `curve` (of one `batch_type`) over each ratio's seeds
    (`mean_band`). `start`: the untrained model's value, put at step 0 of every run before the means, so
    every ratio's curve starts from it (its band is zero there)."""
    part = curves[curves["curve"] == curve]
    if batch_type is not None:
        part = part[part["batch_type"] == batch_type]
    part = part.merge(runs[["run", "ratio"]], on="run")
    if start is not None and not math.isnan(start):
        firsts = part.groupby("run")["step"].min()
        zero = runs.loc[runs["run"].isin(firsts[firsts > 0].index), ["run", "ratio"]].assign(step=0.0, value=float(start))
        part = pd.concat([zero, part[["run", "ratio", "step", "value"]]], ignore_index=True)
    return {ratio: mean_band(sub, "value") for ratio, sub in part.groupby("ratio", sort=False)}


def plot_study_curves(curves: pd.DataFrame, runs: pd.DataFrame, types: Sequence[str]) -> Figure:
    """Training loss (top row) and MSE (bottom row) per batch type (columns): one line per ratio, the mean
    over its seeds of each run's binned curve (curves.csv), with a ± 1 sample std band; a ratio with no
    batches of a type has no line in that type's panels. Colours: the ratio (`ratio_colors`, keyed)."""
    names, colors = ratio_colors(runs)
    fig = Figure(figsize=(4.6 * (len(types) + 1), 8.0), layout="constrained")
    axes, key = _key_layout(fig, 2, len(types), sharey=True)
    for row, curve in enumerate(("loss", "mse")):
        for col, batch_type in enumerate(types):
            ax = axes[row, col]
            means = study_ratio_means(curves, runs, curve, batch_type)
            for ratio in (r for r in colors if r in means):
                _band(ax, *means[ratio], colors[ratio], alpha=0.08, label=ratio)
            if not means:
                ax.text(0.5, 0.5, f"no {batch_type} batches in any run", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_title(f"{batch_type} batches ({get_batch_type(batch_type).label}): {CURVE_LABELS[curve]}", fontsize=11)
            ax.grid(alpha=0.3)
            ax.set_xlabel("training step" if row == 1 else "")
            ax.set_ylabel(f"{CURVE_LABELS[curve]} (bin means)" if col == 0 else "")
            ax.tick_params(labelbottom=True, labelleft=True)
    ratio_key(key, runs, names, colors)
    fig.suptitle(f"Training loss and MSE per batch type: each ratio's mean over {_seeds_words(runs)}, "
                 "band ± 1 sample std", fontsize=13)
    return fig


def plot_study_val_curves(curves: pd.DataFrame, runs: pd.DataFrame,
                          keys: Sequence[str] = ("val/map/multi", "val/map/mono", "val/map/cross"),
                          zero_shot: pd.Series | dict | None = None) -> Figure:
    """Each val metric (one panel per key) against the step: one line per ratio, the mean over its seeds
    with a ± 1 sample std band, starting at step 0 from the untrained model's value (`zero_shot[key]`,
    the study's zero-shot row) when given. Colours: the ratio (`ratio_colors`, keyed)."""
    names, colors = ratio_colors(runs)
    fig = Figure(figsize=(4.6 * (len(keys) + 1), 5.4), layout="constrained")
    axes, key = _key_layout(fig, 1, len(keys), sharey=False)
    starts = {k: None if zero_shot is None or pd.isna(zero_shot.get(k)) else float(zero_shot[k]) for k in keys}
    for ax, metric in zip(axes[0], keys):
        means = study_ratio_means(curves, runs, metric, start=starts[metric])
        for ratio in (r for r in colors if r in means):
            _band(ax, *means[ratio], colors[ratio], alpha=0.1, label=ratio, marker="o", ms=3)
        if starts[metric] is not None:
            ax.scatter([0], [starts[metric]], s=70, marker="*", color="black", zorder=6, label="zero-shot")
        kind, _, setting = metric.removeprefix("val/").partition("/")
        shown = METRIC_LABELS.get(kind, kind)
        ax.set_title(f"{shown}, {setting} setting ({metric})" if kind in METRIC_LABELS else metric, fontsize=11)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"val {shown} (higher = better)" if kind in METRIC_LABELS else metric)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    extra = [Line2D([], [], ls="", marker="*", ms=10, color="black", label="zero-shot model (step 0)")] if any(
        v is not None for v in starts.values()) else []
    ratio_key(key, runs, names, colors, extra)
    fig.suptitle(f"Val curves: each ratio's mean over {_seeds_words(runs)}, band ± 1 sample std"
                 + (", from the zero-shot model at step 0" if extra else ""), fontsize=13)
    return fig
