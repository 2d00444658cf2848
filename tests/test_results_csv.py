"""results.csv / curves.csv (batchmix.report.studies.results_csv): what a study commits, round-tripped."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from batchmix.core.errors import BatchmixError
from batchmix.report.studies.results_csv import CURVES, RESULTS, read_results, write_results
from test_report_fake_sweep import make_fake_sweep


def test_results_hold_every_complete_run_and_its_headline_metrics(tmp_path):
    sweep = make_fake_sweep(tmp_path / "sweep", ratios=[(1.0, 0.0, 0.0), (0.5, 0.25, 0.25)], seeds=(0, 1), steps=120, incomplete=1)
    write_results(sweep, tmp_path / "study")
    runs, _ = read_results(tmp_path / "study")
    assert sorted(runs["run"]) == ["0", "1", "2"]  # job 3 died before metrics.json
    for _, row in runs.iterrows():
        metrics = json.loads((sweep / row["run"] / "metrics.json").read_text())
        for key in ("map/multi", "map/mono", "bias/rank_distance"):
            if key in metrics:
                assert row[key] == pytest.approx(metrics[key], rel=1e-5), key
        assert {"ratio_mono", "ratio_cross", "ratio_multi", "seed"} <= set(runs.columns)
    assert not any(c.startswith("map/multi/") for c in runs.columns)  # per-language keys stay in the run folders


def test_training_curves_are_binned_means_and_val_curves_kept_whole(tmp_path):
    sweep = make_fake_sweep(tmp_path / "sweep", ratios=[(0.5, 0.5, 0.0)], seeds=(0,), steps=200)
    write_results(sweep, tmp_path / "study")
    _, curves = read_results(tmp_path / "study")
    hist = pd.read_csv(sweep / "0" / "history.csv")
    mono_loss = curves[(curves["curve"] == "loss") & (curves["batch_type"] == "mono")]
    assert len(mono_loss) <= 50
    # 200 steps in 50 bins of 4: the first bin is steps 0-3, and its mono rows are averaged
    first = hist[(hist["batch_type"] == "mono") & (hist["step"] < 4)]
    assert mono_loss.iloc[0]["value"] == pytest.approx(first["loss"].mean(), rel=1e-5)
    assert mono_loss.iloc[0]["step"] == pytest.approx(first["step"].mean())
    val = pd.read_csv(sweep / "0" / "val_history.csv")
    got = curves[curves["curve"] == "val/map/multi"].sort_values("step")
    assert np.allclose(got["value"], val["val/map/multi"], rtol=1e-5) and got["step"].tolist() == val["step"].tolist()


def test_missing_or_mismatched_files_are_one_line(tmp_path):
    with pytest.raises(BatchmixError, match="results.csv not found"):
        read_results(tmp_path)
    with pytest.raises(BatchmixError, match="no complete run"):
        write_results(tmp_path, tmp_path / "out")
    sweep = make_fake_sweep(tmp_path / "sweep", ratios=[(1.0, 0.0, 0.0)], seeds=(0, 1), steps=20)
    write_results(sweep, tmp_path / "study")
    runs = pd.read_csv(tmp_path / "study" / RESULTS, dtype={"run": str})
    runs[runs["run"] != "1"].to_csv(tmp_path / "study" / RESULTS, index=False)
    with pytest.raises(BatchmixError, match="curves.csv has runs"):
        read_results(tmp_path / "study")
    assert (tmp_path / "study" / CURVES).is_file()
