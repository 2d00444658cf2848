"""A ratio's colour in the sweep report (`plots.ratio_color`, `ratio_colors`, `ratio_key`): one scheme for every
figure that colours a ratio (the sweep's loss / MSE / val curves and the ratio study's), far from the batch
types' colours, and a key beside the panels that names every ratio. Expected colours come from the corner colours
the study's captions name (grey #5a5a5a, purple #7b3294, gold #e0a800) and the registry's batch-type colours;
expected lines from pandas groupbys over the fake runs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from test_report_fake_sweep import make_fake_sweep, simplex_grid

from batchmix.core.errors import BatchmixError
from batchmix.mixing.batch_types import batch_type_names, get_batch_type
from batchmix.report import plots
from batchmix.report.aggregate import load_histories, load_runs, load_val_histories
from batchmix.report.model import ReportModel

GREY, PURPLE, GOLD = (to_rgb(c) for c in ("#5a5a5a", "#7b3294", "#e0a800"))
EDGE = [(1.0, 0.0, 0.0), (0.75, 0.25, 0.0), (0.5, 0.5, 0.0), (0.25, 0.75, 0.0), (0.0, 1.0, 0.0)]
STEPS, EVERY = 40, 10


def _batch_type_rgbs() -> list[tuple[float, float, float]]:
    return [to_rgb(get_batch_type(name).color) for name in batch_type_names()]


def _far(color, limit: float = 0.3) -> bool:
    return all(np.linalg.norm(np.subtract(color[:3], b)) > limit for b in _batch_type_rgbs())


@pytest.fixture(scope="module")
def simplex(tmp_path_factory) -> Path:
    return make_fake_sweep(tmp_path_factory.mktemp("simplex"), seeds=(0, 1), steps=STEPS, val_every=EVERY)


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Path:
    return make_fake_sweep(tmp_path_factory.mktemp("edge"), ratios=EDGE, seeds=(0, 1, 2), steps=STEPS, val_every=EVERY)


def _key(fig):
    """The key's axes: the one holding the triangle of ratio points."""
    return next(ax for ax in fig.axes for c in ax.collections if c.get_label() == "ratio key")


def _key_colours(fig) -> dict[str, tuple]:
    """{ratio label: its point's colour} read off the triangle (points and labels are drawn in the same order)."""
    key = _key(fig)
    points = next(c for c in key.collections if c.get_label() == "ratio key")
    labels = [t.get_text() for t in key.texts if "/" in t.get_text()]
    return {label: tuple(np.round(c[:3], 4)) for label, c in zip(labels, points.get_facecolors())}


def _line_colours(fig) -> dict[str, set]:
    """{ratio label: the colours its lines have in every panel}."""
    out: dict[str, set] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if "/" in line.get_label():
                out.setdefault(line.get_label(), set()).add(tuple(np.round(to_rgb(line.get_color()), 4)))
    return out


def test_every_ratio_on_a_fine_grid_stays_away_from_every_batch_type_colour():
    """The corner mix over the whole simplex (all five corners, 0.05 apart) never comes within 0.3 RGB of mono
    red, cross blue or multi green."""
    n = 20
    grid = [np.array(p) / n for p in itertools.product(range(n + 1), repeat=5) if sum(p) == n]
    colours = np.array([plots.ratio_color(*p) for p in grid])
    nearest = min(np.linalg.norm(colours - np.array(b), axis=1).min() for b in _batch_type_rgbs())
    assert nearest > 0.3


def test_a_ratio_is_the_mix_of_its_corners_by_its_shares():
    assert plots.ratio_color(1, 0, 0) == pytest.approx(GREY)
    assert plots.ratio_color(0, 1, 0) == pytest.approx(PURPLE)
    assert plots.ratio_color(0, 0, 1) == pytest.approx(GOLD)
    assert plots.ratio_color(0.5, 0.5, 0) == pytest.approx(tuple((g + p) / 2 for g, p in zip(GREY, PURPLE)))
    assert plots.ratio_color(0.25, 0.25, 0.5) == pytest.approx(tuple(g / 4 + p / 4 + y / 2 for g, p, y in zip(GREY, PURPLE, GOLD)))


def test_a_share_beyond_the_corners_is_one_error_line():
    with pytest.raises(BatchmixError, match="RATIO_CORNERS"):
        plots.ratio_color(*([0.0] * len(plots.RATIO_CORNERS)), 1.0)


@pytest.mark.parametrize("figure", ["loss", "mse", "val"])
def test_sweep_curves_colour_each_ratio_as_its_key_and_name_every_ratio(simplex, figure):
    histories, val = load_histories(simplex), load_val_histories(simplex)
    fig = plots.plot_val_curve(val) if figure == "val" else plots.plot_curves(histories, figure)
    key = _key_colours(fig)
    ratios = {"/".join(f"{v:g}" for v in r) for r in simplex_grid(0.25)}
    assert set(key) == ratios  # the key names every ratio ...
    assert {"mono", "cross", "multi"} <= {t.get_text() for t in _key(fig).texts}  # ... and the triangle's corners
    lines = _line_colours(fig)
    assert set(lines) == ratios
    for ratio, colours in lines.items():
        assert colours == {key[ratio]}  # the same colour in every panel, the one its key point has
        assert _far(key[ratio])  # no ratio reads as a batch type
    mono = pd.Series(key).loc["1/0/0"]
    assert mono == pytest.approx(GREY, abs=1e-4)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax is not _key(fig)]
    assert all(ax.get_ylabel() for ax in panels) and any(ax.get_xlabel() for ax in panels)
    assert "mean over 2 seeds" in fig.get_suptitle() and "± 1 sample std" in fig.get_suptitle()


def test_the_sweep_and_the_study_give_a_ratio_the_same_colour(simplex):
    """One function colours a ratio: the study's val figure, drawn from the same runs, agrees line for line."""
    val = load_val_histories(simplex)
    runs = val.drop_duplicates("run")
    curves = val.melt(id_vars=["run", "step"], value_vars=["val/map/multi"], var_name="curve").assign(batch_type=None)
    study = _line_colours(plots.plot_study_val_curves(curves, runs, keys=("val/map/multi",)))
    sweep = _line_colours(plots.plot_val_curve(val))
    assert study == sweep and len(sweep) == 15


def test_the_val_curve_is_each_ratios_seed_mean_with_a_sample_std_band(simplex):
    val = load_val_histories(simplex)
    fig = plots.plot_val_curve(val)
    ax = next(a for a in fig.axes if a.get_lines())
    expected = val.groupby(["ratio", "step"])["val/map/multi"].agg(["mean", "std"])  # std: pandas' ddof=1
    for line in ax.get_lines():
        want = expected.loc[line.get_label()]
        np.testing.assert_allclose(line.get_xdata(), want.index.to_numpy(float))
        np.testing.assert_allclose(line.get_ydata(), want["mean"].to_numpy())
        band = next(c for c in ax.collections if isinstance(c, PolyCollection)
                    and np.allclose(c.get_facecolor()[0][:3], to_rgb(line.get_color())))
        at = band.get_paths()[0].vertices
        last = at[np.isclose(at[:, 0], STEPS), 1]
        assert (last.min(), last.max()) == pytest.approx((want["mean"].iloc[-1] - want["std"].iloc[-1],
                                                          want["mean"].iloc[-1] + want["std"].iloc[-1]))


def test_a_line_sweep_gets_a_legend_that_names_each_ratio_and_the_corner_colours(edge):
    fig = plots.plot_curves(load_histories(edge), "loss")
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1  # the key's; no colorbar, no legend inside a panel
    legend = legends[0]
    named = {t.get_text(): tuple(np.round(to_rgb(h.get_color()), 4)) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    lines = _line_colours(fig)
    assert set(named) == set(lines) == {"/".join(f"{v:g}" for v in r) for r in EDGE}
    assert all(lines[r] == {named[r]} and _far(named[r]) for r in named)
    assert "grey = mono, purple = cross" in legend.get_title().get_text()
    assert not [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "mean over 3 seeds" in fig.get_suptitle()


def test_one_seed_per_ratio_draws_no_band_and_says_so(tmp_path):
    sweep = make_fake_sweep(tmp_path, ratios=EDGE[:3], seeds=(0,), steps=STEPS, val_every=EVERY)
    fig = plots.plot_val_curve(load_val_histories(sweep))
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    assert "one run per ratio" in fig.get_suptitle()


def test_final_vs_ratio_has_a_legend_in_every_panel_and_says_what_the_bars_are(simplex, edge):
    for sweep in (simplex, edge):
        runs = load_runs(sweep)
        fig = plots.plot_final_vs_ratio(runs[runs["status"] == "complete"])
        panels = [ax for ax in fig.axes if ax.has_data()]
        assert len(panels) == 2 and all(ax.get_legend() is not None for ax in panels)
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in panels[:1])
        assert "± 1 sample std" in fig.get_suptitle()
        settings = {t.get_text().split()[-1]: h.get_color() for t, h in
                    zip(panels[0].get_legend().get_texts(), panels[0].get_legend().legend_handles)}
        assert {s: to_rgb(c) for s, c in settings.items()} == {s: to_rgb(c) for s, c in plots.SETTING_PALETTE.items()}


def test_the_report_says_which_corner_colour_is_which_batch_type(simplex):
    assert "grey = mono, purple = cross, gold = multi" in ReportModel.from_dirs([simplex]).curves_note()
