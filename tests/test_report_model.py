"""The report model (`batchmix.report.model`): one formatter, figures drawn once, and the HTML page
and the study Markdown showing the same numbers and captions."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_report_fake_sweep import make_fake_sweep

from batchmix.report.sweep_report import build_report
from batchmix.report.model import CAPTIONS, VAL_TABLE_CAPTION, ReportModel, fmt_mean_std
from batchmix.report.selection_split import selection_note
from batchmix.report.markdown import write_study_markdown

RATIOS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.5, 0.5, 0.0)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return make_fake_sweep(tmp_path_factory.mktemp("sweep"), ratios=RATIOS, seeds=(0, 1), steps=30)


@pytest.mark.parametrize(
    ("mean", "std", "n", "digits", "text"),
    [
        (0.61234, 0.0123, 3, 3, "0.612 ± 0.012"),   # several seeds: mean ± sample std
        (0.61234, math.nan, 1, 3, "0.612"),          # one seed: no std
        (0.61234, 0.0123, 1, 3, "0.612"),            # one seed never shows a std, even if given
        (59.0, 0.0, 3, 0, "59"),                     # a count all seeds share
        (59.4, 0.8, 3, 0, "59 ± 1"),
        (math.nan, 0.1, 3, 3, "–"),                  # missing
        (None, None, 2, 3, "–"),
    ],
)
def test_one_formatter_for_mean_and_std(mean, std, n, digits, text):
    assert fmt_mean_std(mean, std, n, digits) == text


def test_each_figure_is_drawn_once(sweep):
    model = ReportModel.from_dirs([sweep])
    loss, mse = model.curve_figures()[:2]
    assert model.curve_figures()[0] is loss and loss.caption == CAPTIONS["curves_loss"]
    assert loss.name == "curves_loss" and mse.name == "curves_mse" and mse is not loss


def test_results_table_is_the_mean_and_std_of_the_run_files(sweep):
    model = ReportModel.from_dirs([sweep])
    table = model.results_table()
    assert len(table) == len(RATIOS) and set(table["runs"]) == {2}
    for ratio in RATIOS:
        label = "/".join(f"{v:g}" for v in ratio)
        runs = model.runs[model.runs["ratio"] == label]
        expected = f"{np.mean(runs['map/multi']):.3f} ± {np.std(runs['map/multi'], ddof=1):.3f}"
        assert table.loc[table["ratio mono/cross/multi"] == label, "map/multi"].item() == expected
    # sorted best map/multi first
    means = [float(x.split(" ± ")[0]) for x in table["map/multi"]]
    assert means == sorted(means, reverse=True)


@pytest.mark.slow
def test_html_and_markdown_share_captions(sweep, tmp_path):
    page = build_report(sweep, tmp_path / "html").read_text()
    readme = write_study_markdown(sweep, tmp_path / "md" / "README.md").read_text()
    for key in ("curves_loss", "curves_mse"):
        assert f'alt="{CAPTIONS[key]}"' in page
        assert f"**{CAPTIONS[key]}**" in readme
    # the HTML convergence prose is the model's, once
    assert page.count("Definitions: batchmix/eval/convergence.py") == 1
    assert re.search(r"final mAP|Final mAP", readme)


def _val_runs(sweep: Path, ratio: tuple[float, float, float]) -> list[pd.DataFrame]:
    """The val_history.csv of every run of `ratio`, read straight from disk."""
    out = []
    for run in sorted(p for p in sweep.iterdir() if (p / "val_history.csv").is_file()):
        r = yaml.safe_load((run / "config.yaml").read_text())["ratio"]
        if np.allclose([r["mono"], r["cross"], r["multi"]], ratio):
            out.append(pd.read_csv(run / "val_history.csv"))
    return out


def _by_hand(val: pd.DataFrame) -> tuple[float, float, float, float]:
    """final, first step >= 90 % / 95 % of final, trapezoid area / step span, with plain loops."""
    steps, values = val["step"].tolist(), val["val/map/multi"].tolist()
    final = values[-1]
    first = [next(s for s, v in zip(steps, values) if v >= p * final) for p in (0.9, 0.95)]
    area = sum((values[i] + values[i + 1]) / 2 * (steps[i + 1] - steps[i]) for i in range(len(steps) - 1))
    return final, first[0], first[1], area / (steps[-1] - steps[0])


def _text(values: list[float], digits: int) -> str:
    mean, std = np.mean(values), np.std(values, ddof=1)
    return f"{mean:.0f}" if digits == 0 and std == 0 else f"{mean:.{digits}f} ± {std:.{digits}f}"


@pytest.mark.slow
def test_val_table_and_figure_are_the_run_files_pooled_by_ratio(sweep, tmp_path):
    model = ReportModel.from_dirs([sweep])
    table = model.val_table()
    assert list(table.columns) == ["ratio mono/cross/multi", "runs", "final val/map/multi", "steps to 90 %",
                                   "steps to 95 %", "AUC / step"]
    figure = model.curve_figures()[-1]
    assert figure.name == "curves_val" and figure.caption == CAPTIONS["curves_val"]
    lines = {line.get_label(): line for line in figure.figure.axes[0].get_lines()}
    page = build_report(sweep, tmp_path / "html").read_text()
    for ratio in RATIOS:
        label = "/".join(f"{v:g}" for v in ratio)
        runs = _val_runs(sweep, ratio)
        assert len(runs) == 2
        figures = np.array([_by_hand(v) for v in runs])
        row = table[table["ratio mono/cross/multi"] == label].iloc[0]
        assert row["runs"] == 2
        assert row["final val/map/multi"] == _text(figures[:, 0], 3)
        assert row["steps to 90 %"] == _text(figures[:, 1], 0) and row["steps to 95 %"] == _text(figures[:, 2], 0)
        assert row["AUC / step"] == _text(figures[:, 3], 3)
        for column in table.columns[2:]:
            assert f"<td>{row[column]}</td>" in page
        # the figure's line is the mean over both seeds at each validated step (the seeds validate at the same steps)
        assert np.allclose(lines[label].get_xdata(), runs[0]["step"])
        assert np.allclose(lines[label].get_ydata(), (runs[0]["val/map/multi"] + runs[1]["val/map/multi"]) / 2)
    assert f'alt="{CAPTIONS["curves_val"]}"' in page and VAL_TABLE_CAPTION in page
    assert (tmp_path / "html" / "curves_val.png").read_bytes()[:4] == b"\x89PNG"
    assert page.count("Selection split: val (objective `val/map/multi`); test and zero-shot sets are reported, never used to choose.") == 1


@pytest.mark.slow
def test_study_markdown_shows_the_val_curve_table_and_selection_split(sweep, tmp_path):
    readme = write_study_markdown(sweep, tmp_path / "README.md").read_text()
    assert "Selection split: val (objective `val/map/multi`)" in readme
    assert f"**{CAPTIONS['curves_val']}**" in readme and "(figures/curves_val.png)" in readme
    assert f"### {VAL_TABLE_CAPTION}" in readme
    table = ReportModel.from_dirs([sweep]).val_table()
    for _, row in table.iterrows():
        assert "| " + " | ".join(str(v) for v in row) + " |" in readme


@pytest.mark.parametrize(("objectives", "fragment"), [
    (None, "Selection split: val (objective `val/map/multi`); test and zero-shot sets are reported, never used to choose."),
    (["val/map/multi", "val/bias/rank_distance"], "Selection split: val (objectives `val/map/multi`, `val/bias/rank_distance`)"),
    (["map/multi"], "objective `map/multi` reads the test split (allow_test_selection=true)"),
    (["val/map/multi", "bias/rank_distance"], "objective `bias/rank_distance` reads the test split (allow_test_selection=true)"),
    (["train/all/loss_final"], "Selection split: none (the training curve) (objective `train/all/loss_final`)"),
])
def test_selection_note_names_the_split(objectives, fragment):
    assert fragment in selection_note(objectives)


def test_objective_is_read_from_config_and_defaults_to_val(tmp_path):
    make_fake_sweep(tmp_path, ratios=RATIOS[:2], seeds=(0,), steps=20)
    cfg = yaml.safe_load((tmp_path / "1" / "config.yaml").read_text())
    del cfg["objective"]
    (tmp_path / "1" / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert ReportModel.from_dirs([tmp_path]).objectives == ["val/map/multi"]
    cfg["objective"] = ["map/multi", "bias/rank_distance"]
    (tmp_path / "1" / "config.yaml").write_text(yaml.safe_dump(cfg))
    model = ReportModel.from_dirs([tmp_path])
    assert model.objectives == ["val/map/multi", "map/multi", "bias/rank_distance"]
    assert "objectives `map/multi`, `bias/rank_distance` read the test split" in model.selection_note()
