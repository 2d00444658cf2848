"""The declared contrasts (batchmix.report.studies.contrasts) against scipy's own tests, and the study
sections built on them (batchmix.report.studies.baselines_report) on a results table made here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from batchmix.core.errors import BatchmixError
from batchmix.report.studies.baselines_report import baseline_section, contrast_section
from batchmix.report.studies.contrasts import before_after, main, ratio_contrasts

MIXES = [(m / 4, c / 4, (4 - m - c) / 4) for m in range(5) for c in range(5 - m)]


def grid(seed: int = 0, effect: float = -0.03, with_baselines: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for mono, cross, multi in MIXES:
        for s in range(3):
            row = {"run": f"grid/{mono}-{cross}-{s}", "source": "grid", "seed": s,
                   "ratio_mono": mono, "ratio_cross": cross, "ratio_multi": multi,
                   "map/multi": 0.56 + effect * mono + 0.005 * cross + rng.normal(0, 0.002),
                   "mlqa-r/map/multi": 0.43 + effect * mono + rng.normal(0, 0.002),
                   "mlqa-r/map/mono": 0.65 + 0.005 * mono + rng.normal(0, 0.001),
                   "bias/rank_distance": 88 + 11 * mono + rng.normal(0, 1),
                   "mlqa-r/bias/rank_distance": 575 + 140 * mono + rng.normal(0, 5),
                   "val/map/multi": 0.53 + effect * mono + 0.004 * cross + rng.normal(0, 0.001)}
            if with_baselines:
                for method, gain in (("shift", 0.01), ("lir", 0.02), ("centring", 0.015)):
                    for key in ("map/multi", "mlqa-r/map/multi", "val/map/multi"):
                        prefix, _, metric = key.rpartition("map/")
                        row[f"{prefix}{method}/map/{metric}"] = row[key] + gain
            rows.append(row)
    return pd.DataFrame(rows)


def at(frame: pd.DataFrame, mix) -> pd.DataFrame:
    return frame[np.isclose(frame["ratio_mono"], mix[0]) & np.isclose(frame["ratio_cross"], mix[1]) & np.isclose(frame["ratio_multi"], mix[2])]


def test_differences_are_welch_and_slopes_ols_as_scipy_computes_them():
    runs = grid()
    table = ratio_contrasts(runs).set_index(["contrast", "metric"])
    a, b = at(runs, (0, 1, 0))["map/multi"], at(runs, (0.5, 0.5, 0))["map/multi"]
    welch = stats.ttest_ind(a, b, equal_var=False)
    r1 = table.loc[("R1 cross_minus_hybrid", "map/multi")]
    assert r1["estimate"] == pytest.approx(a.mean() - b.mean())
    assert r1["p"] == pytest.approx(welch.pvalue)
    low, high = welch.confidence_interval(0.95)
    assert (r1["ci_low"], r1["ci_high"]) == pytest.approx((low, high))
    fit = stats.linregress(runs["ratio_mono"], runs["bias/rank_distance"])
    r2 = table.loc[("R2 mono_slope", "bias/rank_distance")]
    assert r2["estimate"] == pytest.approx(fit.slope) and r2["p"] == pytest.approx(fit.pvalue)
    half = stats.t.ppf(0.975, len(runs) - 2) * fit.stderr
    assert (r2["ci_low"], r2["ci_high"]) == pytest.approx((fit.slope - half, fit.slope + half))


def test_holm_adjusts_over_the_whole_table():
    table = ratio_contrasts(grid())
    p = table["p"].to_numpy()
    order = np.argsort(p)
    expected = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):  # Holm: max over the sorted prefix of (m - rank) * p, capped at 1
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        expected[i] = running
    np.testing.assert_allclose(table["p_holm"], expected)


def test_before_after_is_the_change_with_both_errors():
    before, after = ratio_contrasts(grid(0)), ratio_contrasts(grid(1, effect=-0.01))
    table = before_after(before, after).set_index(["contrast", "metric"])
    row = table.loc[("R2 mono_slope", "map/multi")]
    b = before.set_index(["contrast", "metric"]).loc[("R2 mono_slope", "map/multi")]
    a = after.set_index(["contrast", "metric"]).loc[("R2 mono_slope", "map/multi")]
    assert row["change"] == pytest.approx(a["estimate"] - b["estimate"])
    half = stats.t.ppf(0.975, min(a["df"], b["df"])) * math.hypot(a["se"], b["se"])
    assert (row["change_low"], row["change_high"]) == pytest.approx((row["change"] - half, row["change"] + half))
    assert row["change"] == pytest.approx(0.02, abs=0.005)  # the slopes were made -0.03 and -0.01


def test_missing_ratio_or_columns_are_one_line(tmp_path: Path, capsys):
    runs = grid()
    with pytest.raises(BatchmixError, match="needs >= 2 runs a side"):
        ratio_contrasts(runs[~np.isclose(runs["ratio_mono"], 0.5) | ~np.isclose(runs["ratio_cross"], 0.5)])
    with pytest.raises(BatchmixError, match="no \\['ratio_mono'"):
        ratio_contrasts(runs.drop(columns=["ratio_mono"]))
    assert main([str(tmp_path / "none.csv"), "--out", str(tmp_path / "c.csv")]) == 2
    assert "not found" in capsys.readouterr().err


def test_the_contrast_section_sets_the_id_mask_table_beside_the_rerun(tmp_path: Path):
    ratio_contrasts(grid(0)).to_csv(tmp_path / "contrasts_id_mask.csv", index=False)
    text = "\n".join(contrast_section(grid(1, effect=-0.01), tmp_path))
    assert "### R4" in text and text.count("| R2 mono_slope |") == 8  # 4 metrics, in both tables
    assert "### R4" not in "\n".join(contrast_section(grid(1), tmp_path / "elsewhere"))


def test_the_baseline_section_chooses_on_val_and_reports_each_fix():
    runs = grid(with_baselines=True)
    zero_shot = pd.Series({"map/multi": 0.36, "mlqa-r/map/multi": 0.32, "val/map/multi": 0.35,
                           "shift/map/multi": 0.40, "lir/map/multi": 0.45, "centring/map/multi": 0.42,
                           "mlqa-r/shift/map/multi": 0.33, "mlqa-r/lir/map/multi": 0.38, "mlqa-r/centring/map/multi": 0.35,
                           "val/shift/map/multi": 0.39, "val/lir/map/multi": 0.44, "val/centring/map/multi": 0.41})
    text = "\n".join(baseline_section(runs, zero_shot))
    assert "| + lir | 0.450 (+0.090) |" in text  # B1: exact value and change from the model
    best = at(runs, (0, 1, 0))  # the synthetic val map/multi peaks at pure cross
    assert "mix chosen on val (0 : 1 : 0" in text and "zero-shot + lir" in text
    diff = best["map/multi"] - 0.45
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / math.sqrt(3)
    assert f"{diff.mean():.3f} [{diff.mean() - half:.3f}, {diff.mean() + half:.3f}]" in text  # B2, by hand
    assert "**B3: a fix on top of training.** lir" in text  # lir adds the most on val in every run
    assert baseline_section(runs.drop(columns=[c for c in runs if "lir/" in c or "shift/" in c or "centring/" in c]), zero_shot) == []
