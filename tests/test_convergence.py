"""Convergence figures on synthetic curves whose answers are known in closed form."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from batchmix.eval.convergence import (
    area_under_curve,
    convergence_summary,
    smooth,
    smoothed_curves,
    steps_to_within,
    val_convergence,
    write_convergence,
)
from batchmix.core.errors import BatchmixError


def history(rows: list[tuple[int, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["step", "batch_type", "loss", "mse"])


def decay(t: np.ndarray, c: float, a: float, tau: float) -> np.ndarray:
    return c + a * np.exp(-t / tau)


def threshold_step(c: float, a: float, tau: float, T: float, tol: float = 0.05) -> float:
    """Continuous t* with a e^(-t/tau) - a e^(-T/tau) = tol * f, f = c + a e^(-T/tau)."""
    f = c + a * math.exp(-T / tau)
    return -tau * math.log((tol * f + a * math.exp(-T / tau)) / a)


def test_exponential_decay_unsmoothed_settles_at_the_closed_form_step():
    c, a, tau, T = 1.0, 3.0, 37.0, 400
    t = np.arange(T + 1, dtype=float)
    h = history([(int(s), "mono", v, v / 10) for s, v in zip(t, decay(t, c, a, tau))])
    out = convergence_summary(h, window=1)
    t_star = threshold_step(c, a, tau, T)
    assert abs(t_star - round(t_star)) > 1e-3  # the answer is not at a rounding edge
    assert out["conv/mono/loss/steps_to_5pct"] == math.ceil(t_star)
    # mse = loss / 10: the relative band is scale-free, so the same step.
    assert out["conv/mono/mse/steps_to_5pct"] == math.ceil(t_star)
    assert out["conv/mono/loss/final"] == pytest.approx(decay(np.array([T]), c, a, tau)[0])
    # mean height: c + a tau / T (1 - e^(-T/tau)); the trapezoid rule is close at step 1 << tau.
    assert out["conv/mono/loss/auc"] == pytest.approx(c + a * tau / T * (1 - math.exp(-T / tau)), rel=1e-3)
    assert out["conv/all/loss/steps_to_5pct"] == out["conv/mono/loss/steps_to_5pct"]


def test_smoothing_delays_the_threshold_by_at_most_the_window():
    c, a, tau, T = 1.0, 3.0, 37.0, 400
    t = np.arange(T + 1, dtype=float)
    h = history([(int(s), "cross", v, v) for s, v in zip(t, decay(t, c, a, tau))])
    raw = convergence_summary(h, window=1)["conv/cross/loss/steps_to_5pct"]
    smoothed = convergence_summary(h, window=20)["conv/cross/loss/steps_to_5pct"]
    assert raw < smoothed <= raw + 20


def test_a_faster_decay_settles_sooner():
    t = np.arange(301, dtype=float)
    fast = convergence_summary(history([(int(s), "mono", v, v) for s, v in zip(t, decay(t, 1, 3, 10))]))
    slow = convergence_summary(history([(int(s), "mono", v, v) for s, v in zip(t, decay(t, 1, 3, 40))]))
    assert fast["conv/mono/loss/steps_to_5pct"] < slow["conv/mono/loss/steps_to_5pct"]
    assert fast["conv/mono/loss/auc"] < slow["conv/mono/loss/auc"]


def test_flat_curve_is_settled_from_the_first_step():
    h = history([(s, "multi", 0.7, 0.2) for s in range(5, 55)])
    out = convergence_summary(h)
    assert out["conv/multi/loss/steps_to_5pct"] == 5.0
    assert out["conv/multi/loss/final"] == pytest.approx(0.7)
    assert out["conv/multi/loss/auc"] == pytest.approx(0.7)
    assert out["conv/multi/mse/auc"] == pytest.approx(0.2)


def test_curve_still_falling_at_the_end_never_settles():
    t = np.arange(100, dtype=float)
    falling = 2.0 - t / 99  # 2 -> 1 linearly: only the last ~5 steps are within 5 % of the end
    out = convergence_summary(history([(int(s), "mono", v, v) for s, v in zip(t, falling)]), window=1)
    assert math.isnan(out["conv/mono/loss/steps_to_5pct"])
    assert out["conv/mono/loss/final"] == pytest.approx(1.0)
    assert out["conv/mono/loss/auc"] == pytest.approx(1.5)
    # ... but with the guard switched off the definition gives the last steps, which is why the guard exists.
    steps_off = steps_to_within(t, falling, 0.05, min_settled=0.0)
    assert 93 <= steps_off <= 99


def test_batch_type_without_steps_is_nan_and_all_covers_every_step():
    h = history([(s, "mono" if s % 2 == 0 else "cross", 1.0, 0.5) for s in range(20)])
    out = convergence_summary(h)
    for fig in ("final", "auc", "steps_to_5pct"):
        assert math.isnan(out[f"conv/multi/loss/{fig}"]) and math.isnan(out[f"conv/multi/mse/{fig}"])
    assert out["conv/all/loss/steps_to_5pct"] == 0.0
    assert out["conv/cross/loss/steps_to_5pct"] == 1.0  # the first cross step is global step 1
    assert set(out) == {f"conv/{b}/{c}/{f}" for b in ("mono", "cross", "multi", "all") for c in ("loss", "mse")
                        for f in ("final", "auc", "steps_to_5pct")}


def test_steps_are_global_steps_of_interleaved_types():
    """cross decays at odd steps only: its threshold is the first odd global step past t*."""
    c, a, tau, T = 1.0, 3.0, 37.0, 401
    rows = []
    for s in range(T + 1):
        if s % 2:
            v = decay(np.array([float(s)]), c, a, tau)[0]
            rows.append((s, "cross", v, v))
        else:
            rows.append((s, "mono", 5.0, 5.0))
    out = convergence_summary(history(rows), window=1)
    t_star = threshold_step(c, a, tau, T)
    expected = math.ceil(t_star) if math.ceil(t_star) % 2 else math.ceil(t_star) + 1
    assert out["conv/cross/loss/steps_to_5pct"] == expected
    assert out["conv/mono/loss/steps_to_5pct"] == 0.0


def test_tolerance_names_the_key_and_wider_bands_settle_sooner():
    t = np.arange(300, dtype=float)
    h = history([(int(s), "mono", v, v) for s, v in zip(t, decay(t, 1, 3, 30))])
    five, ten = convergence_summary(h, tolerance=0.05), convergence_summary(h, tolerance=0.1)
    assert "conv/mono/loss/steps_to_10pct" in ten and "conv/mono/loss/steps_to_5pct" not in ten
    assert ten["conv/mono/loss/steps_to_10pct"] < five["conv/mono/loss/steps_to_5pct"]


def test_auc_is_normalised_by_the_step_span():
    assert area_under_curve(np.array([0, 10]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    assert area_under_curve(np.array([0, 100]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    assert area_under_curve(np.array([4]), np.array([0.3])) == pytest.approx(0.3)
    assert math.isnan(area_under_curve(np.array([]), np.array([])))


def test_smooth_is_the_bias_corrected_ema():
    x = np.array([1.0, 0.0, 0.0])
    alpha = 2 / (3 + 1)
    # debiased EMA: weighted mean with weights (1-alpha)^age
    w = (1 - alpha) ** np.arange(3)[::-1]
    assert smooth(x, 3)[-1] == pytest.approx((w * x).sum() / w.sum())
    assert smooth(x, 1).tolist() == x.tolist()
    with pytest.raises(BatchmixError, match="window=0"):
        smooth(x, 0)


def test_smoothed_curves_long_table():
    h = history([(s, "mono", 1.0 / (s + 1), 0.1) for s in range(10)])
    curves = smoothed_curves(h, window=3)
    assert set(curves["batch_type"]) == {"mono", "all"}
    assert set(curves["curve"]) == {"loss", "mse"}
    mono_loss = curves[(curves.batch_type == "mono") & (curves.curve == "loss")]
    assert mono_loss["step"].tolist() == list(range(10))
    assert mono_loss["smoothed"].iloc[-1] > mono_loss["value"].iloc[-1]  # EMA lags a falling curve


def test_write_convergence_reads_history_csv_and_writes_null_for_nan(tmp_path):
    history([(s, "mono", 1.0, 0.5) for s in range(10)]).to_csv(tmp_path / "history.csv", index=False)
    returned = write_convergence(tmp_path)
    data = json.loads((tmp_path / "convergence.json").read_text())
    assert data["conv/mono/loss/final"] == pytest.approx(1.0) == returned["conv/mono/loss/final"]
    assert data["conv/cross/loss/final"] is None and math.isnan(returned["conv/cross/loss/final"])


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(BatchmixError, match="history.csv"):
        write_convergence(tmp_path)
    with pytest.raises(BatchmixError, match="batch_type"):
        convergence_summary(pd.DataFrame({"step": [0], "loss": [1.0], "mse": [1.0]}))
    with pytest.raises(BatchmixError, match="tolerance"):
        convergence_summary(history([(0, "mono", 1.0, 1.0)]), tolerance=5)


def val_history(steps: list[int], values: list[float], metric: str = "val/map/multi") -> pd.DataFrame:
    return pd.DataFrame({"step": steps, "seconds": 1.0, "n_queries": 10, "n_candidates": 50, metric: values})


def test_val_convergence_by_hand():
    # final = 0.60; 90 % of it = 0.54 -> first value >= 0.54 is 0.55 at step 200;
    # 95 % = 0.57 -> first value >= 0.57 is 0.58 at step 300.
    # trapezoids: (0.10+0.40)/2*100 = 25, (0.40+0.55)/2*100 = 47.5, (0.55+0.58)/2*100 = 56.5,
    # (0.58+0.60)/2*100 = 59 -> 188 over a span of 400 steps = 0.47 (the curve's mean height).
    out = val_convergence(val_history([0, 100, 200, 300, 400], [0.10, 0.40, 0.55, 0.58, 0.60]))
    assert out == pytest.approx({"conv/val/map/multi/final": 0.60, "conv/val/map/multi/step_to_90pct": 200.0,
                                 "conv/val/map/multi/step_to_95pct": 300.0, "conv/val/map/multi/auc": 0.47})
    assert list(out) == ["conv/val/map/multi/final", "conv/val/map/multi/step_to_90pct",
                         "conv/val/map/multi/step_to_95pct", "conv/val/map/multi/auc"]


def test_val_threshold_is_the_first_step_that_reaches_it_even_if_it_dips_later():
    # final 1.0: 90 % = 0.9 exactly, reached (>=) at step 20 although step 30 falls back to 0.8;
    # 95 % = 0.95 first reached at step 40. Rows arrive unsorted: sorted by step first.
    # no step 0 (eval.before=false): AUC over 10..40 = (0.5+0.9)/2*10 + (0.9+0.8)/2*10 + (0.8+1.0)/2*10
    # = 7 + 8.5 + 9 = 24.5, over a span of 30 -> 0.81666...
    out = val_convergence(val_history([40, 10, 20, 30], [1.0, 0.5, 0.9, 0.8]))
    assert out["conv/val/map/multi/step_to_90pct"] == 20.0
    assert out["conv/val/map/multi/step_to_95pct"] == 40.0
    assert out["conv/val/map/multi/auc"] == pytest.approx(24.5 / 30)


def test_val_convergence_other_metric_fractions_and_missing_values():
    # fractions name the keys; a NaN validation in the middle is skipped, the rest as by hand:
    # final 0.4, 50 % = 0.2 -> step 5 (0.3); AUC over steps 0, 5, 10: (0.1+0.3)/2*5 + (0.3+0.4)/2*5 = 2.75 / 10
    out = val_convergence(val_history([0, 5, 7, 10], [0.1, 0.3, math.nan, 0.4], "val/mrr/multi"), "val/mrr/multi", (0.5,))
    assert out == pytest.approx({"conv/val/mrr/multi/final": 0.4, "conv/val/mrr/multi/step_to_50pct": 5.0,
                                 "conv/val/mrr/multi/auc": 0.275})
    # a single validation: its own step and value
    one = val_convergence(val_history([30], [0.25]))
    assert one["conv/val/map/multi/step_to_95pct"] == 30.0 and one["conv/val/map/multi/auc"] == pytest.approx(0.25)


@pytest.mark.parametrize("frame", [None, val_history([], []), val_history([0, 10], [0.2, math.nan]),
                                   val_history([0, 10], [0.2, 0.3], metric="val/map/mono")])
def test_val_convergence_without_a_final_value_is_all_nan(frame):
    out = val_convergence(frame)
    assert set(out) == {f"conv/val/map/multi/{f}" for f in ("final", "step_to_90pct", "step_to_95pct", "auc")}
    assert all(math.isnan(v) for v in out.values())
    with pytest.raises(BatchmixError, match="fraction=90"):
        val_convergence(frame, fractions=(90,))


def test_write_convergence_merges_the_val_curve_and_keeps_the_training_keys(tmp_path):
    train = history([(s, "mono", 1.0, 0.5) for s in range(10)])
    train.to_csv(tmp_path / "history.csv", index=False)
    without = write_convergence(tmp_path)  # an old run: no val_history.csv, no val keys
    assert not [k for k in without if k.startswith("conv/val/")]
    val_history([0, 5, 9], [0.2, 0.5, 0.5]).to_csv(tmp_path / "val_history.csv", index=False)
    from_disk = write_convergence(tmp_path)
    data = json.loads((tmp_path / "convergence.json").read_text())
    # 90 % and 95 % of 0.5 are first reached at step 5; AUC = ((0.2+0.5)/2*5 + 0.5*4) / 9 = 3.75 / 9
    assert data["conv/val/map/multi/final"] == 0.5 and data["conv/val/map/multi/step_to_90pct"] == 5.0
    assert data["conv/val/map/multi/step_to_95pct"] == 5.0
    assert data["conv/val/map/multi/auc"] == pytest.approx(3.75 / 9)
    assert {k: v for k, v in from_disk.items() if not k.startswith("conv/val/")} == pytest.approx(without, nan_ok=True)
    # history passed in: the val curve only when passed too
    assert "conv/val/map/multi/final" not in write_convergence(tmp_path, train)
    given = write_convergence(tmp_path, train, val_history([0, 9], [0.1, 0.2]))
    assert given["conv/val/map/multi/final"] == 0.2 and given["conv/val/map/multi/step_to_90pct"] == 9.0
