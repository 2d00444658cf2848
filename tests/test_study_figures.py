"""The ratio study's curve figures (`plots.plot_study_curves`, `plots.plot_study_val_curves`, drawn by
`ratio_study._figures`): one line per ratio, the mean over its seeds with a ± 1 sample std band, the val
lines starting at step 0 from the zero-shot value, a triangle key that names each ratio, colours apart from
the batch-type palette. Expected values come from pandas groupbys written here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgb

from batchmix.report import plots
from batchmix.report.aggregate import ratio_label

RATIOS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.0)]
SEEDS = (0, 1, 2)
STEPS = (10, 20, 30)
ZERO_SHOT = 0.2


def _runs() -> pd.DataFrame:
    rows = [{"run": f"grid/{k}_{seed}", "seed": seed, "ratio_mono": m, "ratio_cross": c, "ratio_multi": x, "ratio": ratio_label(m, c, x)}
            for k, (m, c, x) in enumerate(RATIOS) for seed in SEEDS]
    return pd.DataFrame(rows)


def _curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Val curves at the same steps in every run, and loss / MSE of each batch type a run trains on (same steps),
    each value moved by a seed-dependent amount so the bands have width."""
    rng = np.random.default_rng(0)
    rows = []
    for r in runs.itertuples():
        for step in STEPS:
            rows += [{"run": r.run, "curve": key, "batch_type": None, "step": float(step),
                      "value": 0.3 + 0.1 * r.ratio_cross + step / 100 + rng.normal(0, 0.01)}
                     for key in ("val/map/multi", "val/map/mono", "val/map/cross")]
            for batch_type in ("mono", "cross", "multi"):
                if getattr(r, f"ratio_{batch_type}") > 0:
                    rows += [{"run": r.run, "curve": curve, "batch_type": batch_type, "step": float(step),
                              "value": 1.0 / step + rng.normal(0, 0.02)} for curve in ("loss", "mse")]
    return pd.DataFrame(rows)


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def _band_edges(ax, color, x: float) -> tuple[float, float]:
    """(lowest, highest) y of the band drawn in `color` at `x`."""
    band = next(c for c in ax.collections if isinstance(c, PolyCollection) and np.allclose(c.get_facecolor()[0][:3], color))
    vertices = band.get_paths()[0].vertices
    at = vertices[np.isclose(vertices[:, 0], x), 1]
    return float(at.min()), float(at.max())


def _key(fig):
    return next(ax for ax in fig.axes for c in ax.collections if c.get_label() == "ratio key")


def test_val_figure_draws_each_ratios_mean_and_std_from_the_zero_shot_point():
    runs = _runs()
    curves = _curves(runs)
    fig = plots.plot_study_val_curves(curves, runs, zero_shot=pd.Series({"val/map/multi": ZERO_SHOT, "val/map/mono": 0.7,
                                                                          "val/map/cross": 0.6}))
    panels = [ax for ax in fig.axes if ax is not _key(fig)]
    assert len(panels) == 3
    expected = curves.merge(runs[["run", "ratio"]]).groupby(["curve", "ratio", "step"])["value"].agg(["mean", "std"])
    for ax, key, start in zip(panels, ("val/map/multi", "val/map/mono", "val/map/cross"), (ZERO_SHOT, 0.7, 0.6)):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        lines = _lines(ax)
        assert sorted(lines) == sorted(runs["ratio"].unique())  # one line per ratio, named by its ratio
        for ratio, line in lines.items():
            x, y = line.get_xdata(), line.get_ydata()
            assert x[0] == 0 and y[0] == pytest.approx(start)  # every ratio starts from the zero-shot value
            want = expected.loc[(key, ratio)]
            np.testing.assert_allclose(x[1:], want.index.to_numpy(float))
            np.testing.assert_allclose(y[1:], want["mean"].to_numpy())
            low, high = _band_edges(ax, line.get_color(), STEPS[-1])
            assert (low, high) == pytest.approx((want["mean"].iloc[-1] - want["std"].iloc[-1],
                                                 want["mean"].iloc[-1] + want["std"].iloc[-1]))
        stars = [c for c in ax.collections if c.get_label() == "zero-shot"]
        assert len(stars) == 1 and stars[0].get_offsets()[0].tolist() == pytest.approx([0, start])
    assert "mean over 3 seeds" in fig.get_suptitle() and "1 sample std" in fig.get_suptitle()


def test_without_a_zero_shot_value_the_val_lines_start_at_the_first_val_point():
    runs = _runs()
    fig = plots.plot_study_val_curves(_curves(runs), runs)
    first = next(ax for ax in fig.axes if ax.get_lines())
    assert {line.get_xdata()[0] for line in first.get_lines()} == {STEPS[0]}
    assert not [c for c in first.collections if c.get_label() == "zero-shot"]


def test_train_figure_has_a_panel_per_batch_type_and_curve_with_a_line_per_ratio_that_trains_on_it():
    runs = _runs()
    curves = _curves(runs)
    fig = plots.plot_study_curves(curves, runs, ["mono", "cross", "multi"])
    panels = [ax for ax in fig.axes if ax is not _key(fig)]
    assert len(panels) == 6
    expected = curves.merge(runs[["run", "ratio"]]).groupby(["curve", "batch_type", "ratio", "step"])["value"].mean()
    for ax in panels:
        title = ax.get_title()
        curve = "loss" if "loss" in title else "mse"
        batch_type = title.split(" ")[0]
        trains_on = {r.ratio for r in runs.itertuples() if getattr(r, f"ratio_{batch_type}") > 0}
        lines = _lines(ax)
        assert set(lines) == trains_on
        for ratio, line in lines.items():
            np.testing.assert_allclose(line.get_ydata(), expected.loc[(curve, batch_type, ratio)].to_numpy())
    assert all(ax.get_xlabel() == "training step" for ax in panels[3:])
    assert panels[0].get_ylabel() and panels[3].get_ylabel()


def test_the_key_puts_each_ratio_on_the_triangle_in_its_line_colour_apart_from_the_batch_types():
    runs = _runs()
    fig = plots.plot_study_val_curves(_curves(runs), runs)
    key = next(c for c in _key(fig).collections if c.get_label() == "ratio key")
    points = {tuple(np.round(p, 6)) for p in key.get_offsets()}
    # mono, cross, multi corners at (0, 0), (1, 0), (1/2, sqrt(3)/2); half mono half cross halfway along the base
    assert points == {(0.0, 0.0), (1.0, 0.0), (0.5, round(math.sqrt(3) / 2, 6)), (0.5, 0.0)}
    labels = {t.get_text() for t in _key(fig).texts}
    assert set(runs["ratio"]) <= labels and {"mono", "cross", "multi"} <= labels
    line_colors = {tuple(np.round(to_rgb(line.get_color()), 4)) for ax in fig.axes if ax is not _key(fig) for line in ax.get_lines()}
    key_colors = {tuple(np.round(c[:3], 4)) for c in key.get_facecolors()}
    assert line_colors == key_colors and len(key_colors) == len(RATIOS)
    batch_types = [to_rgb(c) for c in plots.batch_type_palette().values()]
    assert min(np.linalg.norm(np.subtract(a, b)) for a in line_colors for b in batch_types) > 0.3


def test_ratios_on_one_edge_get_a_legend_instead_of_a_triangle():
    runs = _runs()
    runs = runs[runs["ratio_multi"] == 0]  # mono, cross and half-and-half: a line, no triangle
    fig = plots.plot_study_val_curves(_curves(runs), runs)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    assert set(runs["ratio"]) <= {t.get_text() for t in legends[0].get_texts()}
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection) and c.get_label() == "ratio key"]


def test_the_committed_study_figures_start_from_its_zero_shot_value_and_name_every_ratio():
    """On experiments/ratio_study's own CSVs: 15 ratio lines from results.csv's zero-shot val/map/multi at step 0."""
    from batchmix.report.studies.ratio_study import Study, _figures

    here = Path(__file__).resolve().parents[1] / "experiments" / "ratio_study"
    results = pd.read_csv(here / "results.csv")
    zero_shot = results.loc[results["source"] == "zero_shot", "val/map/multi"].item()
    grid = results[results["source"] == "grid"]
    n_ratios = len(grid[["ratio_mono", "ratio_cross", "ratio_multi"]].drop_duplicates())
    figures = {name: (caption, fig) for name, caption, fig in _figures(Study.read(here))}
    caption, fig = figures["val_curves"]
    multi = next(ax for ax in fig.axes if ax.get_title().endswith("(val/map/multi)"))
    assert len(multi.get_lines()) == n_ratios
    assert {(line.get_xdata()[0], round(line.get_ydata()[0], 6)) for line in multi.get_lines()} == {(0.0, round(zero_shot, 6))}
    assert "mean over its 3 seeds" in caption and "± 1 sample std" in caption and "zero-shot" in caption and "triangle" in caption
    caption, fig = figures["train_curves"]
    mono_loss = next(ax for ax in fig.axes if ax.get_title().startswith("mono batches") and "loss" in ax.get_title())
    with_mono = grid[grid["ratio_mono"] > 0][["ratio_mono", "ratio_cross", "ratio_multi"]].drop_duplicates()
    assert len(mono_loss.get_lines()) == len(with_mono) == 10 and "triangle" in caption
