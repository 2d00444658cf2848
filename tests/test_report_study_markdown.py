"""The paper-layout study block (`batchmix.report.markdown`, `python -m batchmix.report --markdown`):
numbers equal an independent mean/std of the run files, prose outside the markers survives, the
direction verdicts follow the stated 2-SE rule, and missing evaluation sets are named."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from batchmix.report.__main__ import main as report_main
from batchmix.report.markdown import BEGIN, END, write_study_markdown
from batchmix.report.studies.paper_claims import _verdict, schedule_name
from tests.test_report_fake_sweep import make_fake_sweep

RATIOS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3)]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A fake 4-ratio x 3-seed study whose runs also carry an MLQA-R set and configure a missing one."""
    root = make_fake_sweep(tmp_path_factory.mktemp("study"), ratios=RATIOS, seeds=(0, 1, 2), steps=60)
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        metrics = json.loads((run / "metrics.json").read_text())
        metrics.update({f"mlqa-r/{k}": v - 0.1 for k, v in list(metrics.items())})
        (run / "metrics.json").write_text(json.dumps(metrics))
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["data"]["name"] = "xquad-r"
        cfg["eval"] = {"split": "test", "sets": {"mlqa-r": {"split": "test"}, "tydi": {"dataset": "tydi-r", "required": False}}}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _values(root: Path, ratio: tuple[float, float, float], key: str) -> np.ndarray:
    out = []
    for run in root.iterdir():
        if not (run / "metrics.json").is_file():
            continue
        r = yaml.safe_load((run / "config.yaml").read_text())["ratio"]
        if np.allclose([r["mono"], r["cross"], r["multi"]], ratio):
            out.append(json.loads((run / "metrics.json").read_text())[key])
    return np.array(out)


@pytest.mark.slow
def test_block_has_paper_layout_with_independent_mean_and_std(study, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# My study\n\nprose before\n\n{BEGIN}\nold numbers\n{END}\n\nprose after\n")
    write_study_markdown(study, readme)
    text = readme.read_text()
    assert text.startswith("# My study\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert "old numbers" not in text and text.count(BEGIN) == 1 and text.count(END) == 1
    # every schedule row, and both evaluation sets as column groups
    for name in ("mono only", "cross only", "hybrid", "thirds"):
        assert f"| {name} |" in text
    assert "XQuAD-R (test articles) multi" in text and "MLQA-R (test articles, zero-shot) multi" in text
    assert "`tydi` (tydi-r)" in text  # configured, not found: named, not silently dropped
    # cells equal an independent numpy mean and sample std of the run files
    for ratio, name in zip(RATIOS[:3], ("mono only", "cross only", "hybrid")):
        row = next(line for line in text.splitlines() if f"| {name} | " in line and "±" in line and "seeds" not in line)
        for key in ("map/multi", "mlqa-r/map/cross"):
            v = _values(study, ratio, key)
            assert f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" in row, (key, row)
    for name in ("curves_loss", "curves_mse", "map_by_ratio_heldout", "map_by_ratio_mlqa-r"):
        png = tmp_path / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"(figures/{name}.png)" in text


@pytest.mark.slow
def test_convergence_table_shows_each_types_raw_mean_of_its_last_10_batches(study, tmp_path):
    """The committed study table's "last 10" columns: what training wrote as train/<type>/loss_final
    before the final loss became the smoothed curve's last point, now read from history.csv."""
    readme = tmp_path / "README.md"
    write_study_markdown(study, readme)
    lines = readme.read_text().split("### Convergence per batch type", 1)[1].splitlines()
    row = next(line for line in lines if line.startswith("| hybrid |"))
    for btype, curve in (("mono", "loss"), ("cross", "loss"), ("cross", "mse")):
        tails = []
        for run in study.iterdir():
            r = yaml.safe_load((run / "config.yaml").read_text())["ratio"] if (run / "config.yaml").is_file() else None
            if r and np.allclose([r["mono"], r["cross"], r["multi"]], RATIOS[2]):
                history = pd.read_csv(run / "history.csv")
                tails.append(history.groupby("batch_type")[curve].apply(lambda s: s.tail(10).mean())[btype])
        assert len(tails) == 3
        assert f"{np.mean(tails):.3f} ± {np.std(tails, ddof=1):.3f}" in row, (btype, curve, row)
    assert row.split(" | ")[4] == "–"  # hybrid 0.5/0.5/0 has no multi batch


@pytest.mark.slow
def test_rerun_regenerates_the_same_block(study, tmp_path):
    readme = tmp_path / "README.md"
    write_study_markdown(study, readme)
    first = readme.read_text()
    write_study_markdown(study, readme)
    assert readme.read_text() == first and first.startswith(BEGIN)


def test_direction_verdicts_follow_the_two_standard_error_rule():
    a, b = (0.60, 0.01, 3), (0.59, 0.01, 3)
    tie = 2 * math.sqrt(2 * 0.01**2 / 3)  # 0.0163
    assert _verdict(a, b)[1] == "**matches**"
    assert _verdict(b, a)[1] == "matches (tied within 2 SE)"  # -0.01 is inside 2 SE
    assert _verdict((0.55, 0.01, 3), a)[1] == "**does not match**"
    assert _verdict(a, b, strict=True)[1] == "same direction, within noise"  # +0.01 < 0.0163
    assert _verdict((0.65, 0.01, 3), b, strict=True)[1] == "**matches**"
    assert _verdict(b, a, strict=True)[1] == "**does not match**"
    assert f"{tie:.3f}" in _verdict(a, b)[0]
    # lower is better (rank distance)
    assert _verdict((70.0, 1.0, 3), (80.0, 1.0, 3), higher_is_better=False)[1] == "**matches**"


@pytest.mark.slow
def test_direction_table_reads_the_runs(study, tmp_path):
    readme = tmp_path / "README.md"
    write_study_markdown(study, readme)
    rows = [line for line in readme.read_text().splitlines() if line.startswith("| cross only beats mono only on multilingual")]
    assert len(rows) == 2  # one per evaluation set
    # the fake's multi mAP rises with the cross share and falls with mono: cross only wins clearly
    cross, mono = _values(study, (0.0, 1.0, 0.0), "map/multi"), _values(study, (1.0, 0.0, 0.0), "map/multi")
    assert cross.mean() - mono.mean() > 0.1
    assert rows[0].endswith("**matches** |") and f"{cross.mean() - mono.mean():+.3f}" in rows[0]


def test_schedule_names():
    assert schedule_name(1, 0, 0) == "mono only" and schedule_name(0.5, 0.5, 0) == "hybrid"
    assert schedule_name(0.2, 0.8, 0) == "0.2 / 0.8 / 0"


@pytest.mark.slow
def test_cli_markdown_and_one_line_error(study, tmp_path, capsys):
    readme = tmp_path / "sub" / "README.md"
    assert report_main([str(study), "--out", str(tmp_path / "html"), "--markdown", str(readme)]) == 0
    assert "study tables:" in capsys.readouterr().out and BEGIN in readme.read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty), "--markdown", str(readme)]) == 2
    assert re.fullmatch(r"batchmix: error: .*\n", capsys.readouterr().err)
