"""The sweep report on synthetic sweeps: aggregation, shapes, the HTML page, Optuna studies, the CLI
and the Hydra callback. No training: runs are fake dirs (tests/test_report_fake_sweep.py)."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report_fake_sweep import make_fake_sweep, simplex_grid

from batchmix.eval.convergence import convergence_summary
from batchmix.core.errors import BatchmixError
from batchmix.report import build_report, by_ratio, load_histories, load_runs, load_val_histories, sweep_shape
from batchmix.report.plots import ternary_xy

LINE = [(m, round(1 - m, 6), 0.0) for m in (0.0, 0.5, 1.0)]


@pytest.fixture(scope="module")
def simplex_sweep(tmp_path_factory) -> Path:
    return make_fake_sweep(tmp_path_factory.mktemp("simplex"), ratios=simplex_grid(0.5), seeds=(0, 1), steps=60, incomplete=1)


@pytest.fixture(scope="module")
def simplex_report(simplex_sweep) -> Path:
    return build_report(simplex_sweep)


def test_load_runs_one_row_per_run_with_ratio_seed_metrics_and_convergence(simplex_sweep):
    runs = load_runs(simplex_sweep)
    assert len(runs) == 12  # 6 ratios x 2 seeds; .hydra/config.yaml is not a run
    assert runs["run"].tolist() == [str(i) for i in range(12)]  # natural order: 2 before 10
    assert set(runs["seed"]) == {0, 1}
    assert runs["status"].tolist() == ["complete"] * 11 + ["incomplete"]
    assert np.allclose(runs[["ratio_mono", "ratio_cross", "ratio_multi"]].sum(axis=1), 1.0)
    first = json.loads((simplex_sweep / "0" / "metrics.json").read_text())
    assert runs.loc[0, "map/multi"] == pytest.approx(first["map/multi"])
    assert math.isnan(runs.loc[11, "map/multi"])  # the incomplete run still has its curves
    expected = convergence_summary(pd.read_csv(simplex_sweep / "11" / "history.csv"))
    for key, value in expected.items():
        assert runs.loc[11, key] == pytest.approx(value, nan_ok=True)
    assert not [c for c in runs.columns if c.startswith("cfg/")]  # nothing but ratio and seed varies


def test_config_values_that_vary_become_columns(tmp_path):
    make_fake_sweep(tmp_path, ratios=LINE, seeds=(0,), steps=20)
    cfg = (tmp_path / "1" / "config.yaml").read_text().replace("lr: 3.0e-05", "lr: 0.001")
    (tmp_path / "1" / "config.yaml").write_text(cfg)
    runs = load_runs(tmp_path)
    assert runs["cfg/optim.lr"].tolist() == [3e-5, 1e-3, 3e-5]
    assert "cfg/loss._target_" not in runs.columns  # the same in every run: no column


def test_single_run_dir_and_histories(simplex_sweep):
    one = load_runs(simplex_sweep / "3")
    assert len(one) == 1 and one.loc[0, "run"] == "3"
    hist = load_histories(simplex_sweep)
    assert len(hist) == 12 * 60
    assert list(hist.columns[:6]) == ["run", "ratio_mono", "ratio_cross", "ratio_multi", "ratio", "seed"]
    assert set(hist.loc[hist["ratio"] == "0/0/1", "batch_type"]) == {"multi"}


def test_by_ratio_pools_seeds_into_mean_and_sample_std(simplex_sweep):
    runs = load_runs(simplex_sweep)
    table = by_ratio(runs, ["map/multi"])
    row = table[table["ratio"] == "0.5/0.5/0"].iloc[0]
    values = runs.loc[runs["ratio"] == "0.5/0.5/0", "map/multi"]
    assert row["n"] == 2
    assert row["map/multi"] == pytest.approx(values.mean())
    assert row["map/multi/std"] == pytest.approx(values.std(ddof=1))
    assert len(table) == 6


@pytest.mark.parametrize(
    "ratios, shape",
    [
        ([], "none"),
        ([(0.5, 0.5, 0.0)], "point"),
        (LINE, "line"),
        ([(0.2, 0.5, 0.3), (0.2, 0.3, 0.5), (0.2, 0.8, 0.0)], "line"),  # mono fixed: still a line
        (simplex_grid(0.5), "simplex"),
    ],
)
def test_sweep_shape(ratios, shape):
    runs = pd.DataFrame(ratios, columns=["ratio_mono", "ratio_cross", "ratio_multi"])
    assert sweep_shape(runs) == shape


def test_ternary_projection_puts_corners_and_centre_where_they_belong():
    x, y = ternary_xy([1, 0, 0, 1 / 3], [0, 1, 0, 1 / 3], [0, 0, 1, 1 / 3])
    assert np.allclose(x, [0, 1, 0.5, 0.5]) and np.allclose(y, [0, 0, math.sqrt(3) / 2, math.sqrt(3) / 6])


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.mark.slow
def test_report_is_self_contained_with_every_plot(simplex_report, simplex_sweep):
    assert simplex_report == simplex_sweep / "report" / "report.html"
    page = simplex_report.read_text()
    images = _images(page)
    # final-vs-ratio, ternary, mse curves, loss curves, validation curve
    assert len(images) == 5 and all(img[:8] == b"\x89PNG\r\n\x1a\n" and len(img) > 10_000 for img in images)
    for name in ("final_vs_ratio", "ternary", "curves_mse", "curves_loss", "curves_val"):
        assert (simplex_sweep / "report" / f"{name}.png").read_bytes() in images
    # nothing to fetch: no remote URL, no script, no stylesheet link
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<script" not in page and "<link" not in page
    assert "0.5/0.5/0" in page and "map/multi" in page and "Steps to within 5 %" in page


def test_report_tables_round_trip(simplex_report, simplex_sweep):
    runs = load_runs(simplex_sweep)
    from_csv = pd.read_csv(simplex_sweep / "report" / "runs.csv")
    from_parquet = pd.read_parquet(simplex_sweep / "report" / "runs.parquet")
    for table in (from_csv, from_parquet):
        assert len(table) == len(runs)
        assert np.allclose(table["map/multi"], runs["map/multi"], equal_nan=True)
        assert np.allclose(table["conv/all/loss/auc"], runs["conv/all/loss/auc"], equal_nan=True)


def test_line_sweep_report_has_no_ternary(tmp_path):
    make_fake_sweep(tmp_path, ratios=LINE, seeds=(0,), steps=30)
    page = build_report(tmp_path).read_text()
    assert len(_images(page)) == 4 and not (tmp_path / "report" / "ternary.png").exists()


def test_runs_without_val_history_get_no_validation_curve_and_say_so(tmp_path):
    """Runs made before validation was logged: no val_history.csv, objective map/multi on the test split."""
    make_fake_sweep(tmp_path, ratios=LINE, seeds=(0,), steps=30, val_every=None)
    assert load_val_histories(tmp_path).empty
    assert not [c for c in load_runs(tmp_path).columns if c.startswith("conv/val/")]
    page = build_report(tmp_path).read_text()
    assert len(_images(page)) == 3 and not (tmp_path / "report" / "curves_val.png").exists()
    assert page.count("No validation curve: no run has a val_history.csv") == 1
    assert "objective `map/multi` reads the test split (allow_test_selection=true)" in page


def test_val_figures_come_from_val_history_else_from_convergence_json(tmp_path):
    make_fake_sweep(tmp_path, ratios=LINE, seeds=(0,), steps=30)
    runs = load_runs(tmp_path)
    val = pd.read_csv(tmp_path / "0" / "val_history.csv")
    assert runs.loc[0, "conv/val/map/multi/final"] == pytest.approx(val["val/map/multi"].iloc[-1])
    stacked = load_val_histories(tmp_path)
    assert len(stacked) == 3 * len(val) and list(stacked.columns[:6]) == ["run", "ratio_mono", "ratio_cross", "ratio_multi", "ratio", "seed"]
    # a run whose val_history.csv is gone but whose convergence.json kept the figures
    (tmp_path / "1" / "val_history.csv").unlink()
    (tmp_path / "1" / "convergence.json").write_text(json.dumps({"conv/all/loss/auc": 1.0, "conv/val/map/multi/final": 0.42,
                                                                "conv/val/map/multi/step_to_90pct": None}))
    runs = load_runs(tmp_path)
    assert runs.loc[1, "conv/val/map/multi/final"] == 0.42 and math.isnan(runs.loc[1, "conv/val/map/multi/step_to_90pct"])
    assert runs.loc[1, "conv/all/loss/auc"] != 1.0  # the training figures are recomputed from history.csv, as before
    assert set(load_val_histories(tmp_path)["run"]) == {"0", "2"}


def _study(tmp_path: Path, multi: bool):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(study_name="ratio", storage=storage, directions=directions,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with warnings.catch_warnings():  # set_metric_names is marked experimental
        warnings.simplefilter("ignore")
        study.set_metric_names(["map/multi", "bias/rank_distance"] if multi else ["map/multi"])
    for _ in range(12):
        trial = study.ask()
        mono = trial.suggest_float("mono", 0, 1)
        multi_share = trial.suggest_float("multi_frac", 0, 1) * (1 - mono)
        # as the batchmix sweeper records the derived ratio
        for k, v in (("ratio.mono", mono), ("ratio.cross", 1 - mono - multi_share), ("ratio.multi", multi_share)):
            trial.set_user_attr(k, v)
        score = 0.3 + 0.2 * multi_share + 0.05 * (1 - mono)
        study.tell(trial, [score, 0.4 * mono + 0.01 * multi_share] if multi else score)
    return study, storage


@pytest.mark.slow
def test_optuna_files_in_a_sweep_dir_give_history_and_pareto_front(tmp_path):
    study, _ = _study(tmp_path, multi=True)
    sweep = make_fake_sweep(tmp_path / "sweep", ratios=LINE, seeds=(0,), steps=20)
    study.trials_dataframe(multi_index=False).to_csv(sweep / "optuna_trials.csv", index=False)
    front = sorted(t.number for t in study.best_trials)
    pd.DataFrame({"number": front}).to_csv(sweep / "pareto_front.csv", index=False)
    page = build_report(sweep).read_text()
    assert (sweep / "report" / "optuna_history.png").exists() and (sweep / "report" / "pareto_front.png").exists()
    assert "Pareto-optimal trials" in page and "bias/rank_distance (minimize)" in page
    trials = pd.read_csv(sweep / "report" / "trials.csv")
    assert {"map/multi", "bias/rank_distance", "ratio_mono", "ratio"} <= set(trials.columns)


def test_pareto_front_without_the_file_matches_optuna(tmp_path):
    from batchmix.report.optuna_trials import load_study_files

    study, _ = _study(tmp_path, multi=True)
    study.trials_dataframe(multi_index=False).to_csv(tmp_path / "optuna_trials.csv", index=False)
    table = load_study_files(tmp_path)
    assert table.directions == ["maximize", "minimize"]  # by the name rule: bias/* is minimised
    assert table.pareto == sorted(t.number for t in study.best_trials)


def test_study_name_and_directions_come_from_the_sweepers_multirun_yaml(tmp_path):
    """The sweeper's config beats the name rule (here: a minimised map/multi, against the rule)."""
    import yaml

    from batchmix.report.optuna_trials import load_study_files

    study, _ = _study(tmp_path, multi=True)
    study.trials_dataframe(multi_index=False).to_csv(tmp_path / "optuna_trials.csv", index=False)
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"sweeper": {"study_name": "ratio_pareto", "direction": ["minimize", "minimize"], "metric_names": "${objective}"}}}))
    table = load_study_files(tmp_path)
    assert table.name == "ratio_pareto" and table.directions == ["minimize", "minimize"]
    assert table.objectives == ["map/multi", "bias/rank_distance"]


@pytest.mark.slow
def test_report_straight_from_a_storage_url(tmp_path):
    _, storage = _study(tmp_path, multi=False)
    res = subprocess.run([sys.executable, "-m", "batchmix.report", storage, "--study", "ratio", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"report: {tmp_path / 'out' / 'report.html'}"
    page = (tmp_path / "out" / "report.html").read_text()
    # no run dirs: the trials' ratios and objective fill the table and the simplex map
    assert (tmp_path / "out" / "optuna_history.png").exists() and (tmp_path / "out" / "ternary.png").exists()
    assert not (tmp_path / "out" / "pareto_front.png").exists()
    assert len(pd.read_csv(tmp_path / "out" / "runs.csv")) == 12 and "map/multi (maximize)" in page


@pytest.mark.parametrize("args, fragment", [(["{tmp}/missing"], "does not exist"), (["{tmp}"], "no batchmix run"),
                                            (["sqlite:///{tmp}/none.db", "--study", "x"], "no study 'x'")])
def test_cli_errors_are_one_line(tmp_path, capsys, args, fragment):
    from batchmix.report.__main__ import main

    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("batchmix: error:") and fragment in err


def test_hydra_callback_builds_the_report_and_prints_its_path(tmp_path, capsys):
    from omegaconf import OmegaConf

    from batchmix.report.callback import ReportCallback

    make_fake_sweep(tmp_path / "sweep", ratios=LINE, seeds=(0,), steps=20)
    ReportCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'sweep' / 'report' / 'report.html'}"
    # an empty sweep (every job failed) warns and does not raise
    (tmp_path / "empty").mkdir()
    ReportCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "empty")}}}))
    assert "report:" not in capsys.readouterr().out


def test_unknown_curve_is_a_batchmix_error(simplex_sweep):
    from batchmix.report.plots import plot_curves

    with pytest.raises(BatchmixError, match="curve='acc'"):
        plot_curves(load_histories(simplex_sweep), "acc")


def test_no_network_needed_to_view(simplex_report):
    assert os.path.getsize(simplex_report) < 5_000_000
