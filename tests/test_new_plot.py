"""A new report plot is one `CurvePlot`: this file draws "steps per batch type" (bars in the batch-type
palette, one group per ratio) and registers it without touching any batchmix source file, then checks
that both views of a sweep show it under its caption: report.html (its PNG written beside it) and
the sweep's README block (`batchmix report <sweep> --markdown`). The plot is unregistered afterwards,
so other tests see the built-in curve figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from batchmix.core.errors import BatchmixError
from batchmix.report import plots
from batchmix.report.markdown import write_study_markdown
from batchmix.report.model import CURVE_PLOTS, CurvePlot, ReportModel, registered
from batchmix.report.sweep_report import build_report

NAME, CAPTION = "steps_by_type", "Training steps per batch type, by ratio"


def draw_steps_by_type(model: ReportModel) -> Figure:
    """Steps of each batch type per ratio, averaged over seeds: bars in the batch-type palette."""
    hist = model.histories
    per_run = hist.groupby(["ratio", "run", "batch_type"]).size().unstack(fill_value=0).groupby("ratio").mean()
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    palette = plots.batch_type_palette()
    width = 0.8 / len(palette)
    x = np.arange(len(per_run))
    for k, (batch_type, colour) in enumerate(palette.items()):
        ax.bar(x + k * width, per_run.get(batch_type, pd.Series(0, index=per_run.index)), width, color=colour, label=batch_type)
    ax.set_xticks(x + width * (len(palette) - 1) / 2, per_run.index)
    ax.set_xlabel("ratio mono/cross/multi")
    ax.set_ylabel("training steps (mean over seeds)")
    ax.legend(title="batch type")
    return fig


PLOT = CurvePlot(NAME, CAPTION, draw_steps_by_type)


def _fake_sweep(root, ratios=((1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.0, 0.5, 0.5)), seeds=(0, 1), steps=20):
    for num, shares in enumerate(ratios):
        for seed in seeds:
            run = root / f"{num}_{seed}"
            run.mkdir(parents=True)
            ratio = dict(zip(("mono", "cross", "multi"), shares))
            (run / "config.yaml").write_text(yaml.safe_dump({"ratio": ratio, "seed": seed, "model": {"name_or_path": "tiny"}}))
            types = [t for t, share in ratio.items() for _ in range(round(share * steps))]
            rows = [{"step": s, "epoch": 0, "batch_type": t, "loss": 2.0 * np.exp(-s / 8) + 0.5, "mse": 0.3 * np.exp(-s / 9)}
                    for s, t in enumerate(types)]
            pd.DataFrame(rows).to_csv(run / "history.csv", index=False)
            metrics = {"map/mono": 0.5 + 0.1 * shares[0], "map/cross": 0.4 + 0.1 * shares[1],
                       "map/multi": 0.3 + 0.1 * shares[2] + 0.01 * seed, "bias/rank_distance": 0.2}
            (run / "metrics.json").write_text(json.dumps(metrics))
    return root


@pytest.fixture
def steps_plot():
    builtin = [p.name for p in CURVE_PLOTS]
    with registered(PLOT) as plot:
        yield plot
    assert [p.name for p in CURVE_PLOTS] == builtin


def test_the_new_plot_stands_on_its_own(steps_plot, tmp_path):
    fig = draw_steps_by_type(ReportModel.from_dirs([_fake_sweep(tmp_path / "sweep")]))
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    heights = {bar.get_label(): [] for bar in ax.containers}
    assert set(heights) == {"mono", "cross", "multi"}
    mono = next(c for c in ax.containers if c.get_label() == "mono")
    ticks = [label.get_text() for label in ax.get_xticklabels()]
    assert dict(zip(ticks, (round(b.get_height()) for b in mono))) == {"1/0/0": 20, "0.5/0.5/0": 10, "0/0.5/0.5": 0}


def test_both_views_show_it(steps_plot, tmp_path):
    sweep = _fake_sweep(tmp_path / "sweep")
    page = build_report(sweep).read_text()
    assert CAPTION in page and (sweep / "report" / f"{NAME}.png").is_file()
    readme = tmp_path / "README.md"
    write_study_markdown(sweep, readme)
    text = readme.read_text()
    assert f"**{CAPTION}**" in text and f"figures/{NAME}.png" in text and (tmp_path / "figures" / f"{NAME}.png").is_file()


def test_without_it_no_view_shows_it_and_names_are_unique(tmp_path):
    sweep = _fake_sweep(tmp_path / "sweep")
    assert CAPTION not in build_report(sweep).read_text()
    with pytest.raises(BatchmixError, match="already registered"):
        with registered(CurvePlot("curves_loss", "again", draw_steps_by_type)):
            pass
