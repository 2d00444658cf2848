"""The report model (`batchmix.report.model`): one formatter, figures drawn once, and the HTML page
and the study Markdown showing the same numbers and captions."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from test_report_fake_sweep import make_fake_sweep

from batchmix.report.sweep_report import build_report
from batchmix.report.model import CAPTIONS, ReportModel, fmt_mean_std
from batchmix.report.study_markdown import write_study_markdown

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
    first = model.curves_figure("loss")
    assert model.curves_figure("loss") is first and first.caption == CAPTIONS["curves_loss"]
    assert model.curves_figure("mse") is not first


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


def test_html_and_markdown_share_captions(sweep, tmp_path):
    page = build_report(sweep, tmp_path / "html").read_text()
    readme = write_study_markdown(sweep, tmp_path / "md" / "README.md").read_text()
    for key in ("curves_loss", "curves_mse"):
        assert f'alt="{CAPTIONS[key]}"' in page
        assert f"**{CAPTIONS[key]}**" in readme
    # the HTML convergence prose is the model's, once
    assert page.count("Definitions: batchmix/convergence.py") == 1
    assert re.search(r"final mAP|Final mAP", readme)
