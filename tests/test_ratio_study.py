"""The ratio study's files and README block (batchmix.report.studies.ratio_study) on a synthetic study: a fake
grid with a known quadratic val surface, fake Optuna trials and a zero-shot run."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from batchmix.report.__main__ import main as report_main
from batchmix.report.studies.ratio_study import (FLAT_GAIN, GRID, OPTUNA, SOURCE, ZERO_SHOT, collect, steps_to_fraction,
                                        study_block)
from batchmix.report.studies.results_csv import read_results, read_timing
from test_report_fake_sweep import make_fake_sweep, simplex_grid


def val_surface(mono: float, cross: float, multi: float) -> float:
    """The fake val map/multi: a Scheffé quadratic with a peak inside the simplex."""
    return 0.40 + 0.05 * mono + 0.10 * cross + 0.02 * multi + 0.30 * cross * multi + 0.10 * mono * cross


def add_eval_keys(sweep, seed_noise: float = 0.002) -> None:
    """Give each fake run what a study run's metrics.json holds beyond the fakes: val/ and mlqa-r/ keys."""
    for metrics_file in sorted(sweep.glob("*/metrics.json")):
        cfg = json.loads(json.dumps(__import__("yaml").safe_load((metrics_file.parent / "config.yaml").read_text())))
        r = cfg["ratio"]
        rng = np.random.default_rng(cfg["seed"] + 17)
        metrics = json.loads(metrics_file.read_text())
        metrics["val/map/multi"] = val_surface(r["mono"], r["cross"], r["multi"]) + rng.normal(0, seed_noise)
        metrics["train/steps"] = 100
        for key in ("map/multi", "map/mono", "map/cross", "bias/rank_distance"):
            metrics[f"mlqa-r/{key}"] = metrics[key] - 0.1
        metrics_file.write_text(json.dumps(metrics))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    grid = make_fake_sweep(root / "grid", ratios=simplex_grid(0.5), seeds=(0, 1, 2), steps=100, val_every=20)
    add_eval_keys(grid)
    optuna = make_fake_sweep(root / "optuna", ratios=[(0.1, 0.6, 0.3), (0.0, 0.5, 0.5), (0.8, 0.1, 0.1)], seeds=(0,), steps=100, val_every=20)
    add_eval_keys(optuna)
    zero = root / "zero_shot"
    zero.mkdir()
    (zero / "config.yaml").write_text("seed: 0\n")
    (zero / "metrics_before.json").write_text(json.dumps({"map/multi": 0.21, "val/map/multi": 0.2, "mlqa-r/map/multi": 0.19}))
    (root / "timing.log").write_text("[00:00:00] study: warm (0 s)\n[00:00:10] study: grid (10 s)\n"
                                     "[00:05:00] study: warm (0 s)\n[00:05:02] study: grid (2 s)\n[00:06:42] study: optuna (102 s)\n"
                                     "[00:07:00] study: results (120 s)\n")
    out = root / "results"
    collect(grid, optuna, zero, out, root / "timing.log")
    return root, grid, out


def test_collect_writes_every_run_once_with_its_source(study):
    _, grid, out = study
    runs, curves = read_results(out)
    assert runs[SOURCE].value_counts().to_dict() == {GRID: 18, OPTUNA: 3, ZERO_SHOT: 1}
    assert runs["run"].is_unique and set(curves["run"]) == set(runs.loc[runs[SOURCE] != ZERO_SHOT, "run"])
    zs = runs[runs[SOURCE] == ZERO_SHOT].iloc[0]
    assert zs["map/multi"] == pytest.approx(0.21) and zs["mlqa-r/map/multi"] == pytest.approx(0.19)
    one = runs[runs["run"] == "grid/7"].iloc[0]
    assert one["val/map/multi"] == pytest.approx(json.loads((grid / "7" / "metrics.json").read_text())["val/map/multi"], rel=1e-5)


def test_timing_sums_each_stage_and_drops_a_killed_one(tmp_path):
    log = tmp_path / "timing.log"
    log.write_text("[x] study: warm (0 s)\n[x] study: grid (10 s)\n[x] study: warm (0 s)\n[x] study: grid (2 s)\n"
                   "[x] study: optuna (102 s)\n[x] study: results (120 s)\n")
    # first invocation: warm 10 s, then grid was killed (its time unknown); second: warm 2, grid 100, optuna 18
    assert read_timing(log).set_index("stage")["seconds"].to_dict() == {"warm": 12, "grid": 100, "optuna": 18}


def test_steps_to_95_percent_interpolates_between_val_points():
    # 95 % of 0.5 is 0.475, reached between step 32 (0.45) and 64 (0.5), half way up: step 48
    assert steps_to_fraction(np.array([0.0, 32, 64]), np.array([0.30, 0.45, 0.50])) == pytest.approx(48.0)
    # a dip after the crossing does not move it; a first point already past 95 % is that point
    assert steps_to_fraction(np.array([0.0, 32, 64, 96]), np.array([0.30, 0.49, 0.47, 0.50])) == pytest.approx(
        0 + (0.475 - 0.30) / (0.49 - 0.30) * 32)
    assert steps_to_fraction(np.array([32.0, 64]), np.array([0.499, 0.5])) == 32.0


def test_block_chooses_on_val_and_reports_the_flattening_check(study, tmp_path):
    root, grid, out = study
    block = study_block(out, tmp_path / "figures")
    # the chosen mix: the peak of the val fit; the fake surface's own peak found by brute force on the same grid
    pts = np.array([p for p in itertools.product(range(101), repeat=3) if sum(p) == 100]) / 100
    peak = pts[np.argmax([val_surface(*p) for p in pts])]
    assert f"### The mix chosen on val ({' : '.join(f'{v:.2f}' for v in peak)}," in block
    # flattening, computed here from the val_history.csv files: gain over the last 20 % of 100 steps (80 -> 100)
    fails = []
    for run in sorted(grid.iterdir(), key=lambda p: int(p.name)):
        val = pd.read_csv(run / "val_history.csv").set_index("step")["val/map/multi"]
        if val[100] - val[80] >= FLAT_GAIN:
            fails.append(run.name)
    assert 0 < len(fails) < 18  # the fake rises slower without multi batches
    assert f"{18 - len(fails)} of 18 runs one by one" in block
    for heading in ("Scheffé quadratic mixture model", "Language bias", "The paper's claims", "Convergence per batch type",
                    "Optuna TPE over the same simplex (3 trials", "mAP on every ratio"):
        assert heading in block
    assert "| **total** | 130 | **2.2** |" in block
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"ternary_fits.png", "train_curves.png", "val_curves.png"}


def test_from_results_regenerates_the_readme_from_the_csvs_alone(study, tmp_path, capsys):
    _, _, out = study
    readme = tmp_path / "README.md"
    readme.write_text("# Prose kept\n\n<!-- batchmix:report:begin -->\nold\n<!-- batchmix:report:end -->\ntail\n")
    assert report_main(["--from-results", str(out), "--markdown", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Prose kept") and text.rstrip().endswith("tail") and "\nold\n" not in text
    zero_row = next(line for line in text.splitlines() if line.startswith("| none (zero-shot) | – | – |"))
    assert "0.210" in zero_row and "0.190" in zero_row


def test_from_results_without_the_csvs_is_one_line(tmp_path, capsys):
    assert report_main(["--from-results", str(tmp_path / "nowhere"), "--markdown", str(tmp_path / "R.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "results.csv not found" in err


def test_collect_without_a_grid_is_one_line(tmp_path, capsys):
    from batchmix.report.studies.ratio_study import main as collect_main

    assert collect_main(["collect", "--grid", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no complete grid run under" in err and "run.sh" in err


def test_the_committed_csvs_reproduce_the_committed_readme_block(tmp_path):
    """experiments/ratio_study/README.md's block is what its results.csv + curves.csv give (the date aside)."""
    from pathlib import Path

    from batchmix.report.markdown import BEGIN, END

    here = Path(__file__).resolve().parents[1] / "experiments" / "ratio_study"
    committed = (here / "README.md").read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    block = study_block(here, tmp_path / "figures",
                        command="python -m batchmix.report --from-results experiments/ratio_study --markdown experiments/ratio_study/README.md")
    strip_date = lambda text: text.strip().split("\n", 1)[1]  # noqa: E731 - the first line says when it was generated
    assert strip_date(block) == strip_date(committed)
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {p.name for p in (here / "figures").iterdir()}
