"""The Scheffé quadratic mixture model (batchmix.report.studies.mixture_model) against hand derivations:
the design written out term by term, least squares through numpy, intervals from the textbook
formulas with scipy's t quantiles, and a surface whose best mix is known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from batchmix.core.errors import BatchmixError
from batchmix.report.studies.mixture_model import fit_mixture, simplex_points

pytest.importorskip("statsmodels")

NAMES = ["mono", "cross", "multi"]
BETA = {"mono": 0.55, "cross": 0.62, "multi": 0.60, "mono*cross": 0.08, "mono*multi": -0.04, "cross*multi": 0.02}


def runs(beta: dict[str, float], noise: float, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for seed in range(seeds):
        for m, c, u in simplex_points(3, 0.25):
            y = (beta["mono"] * m + beta["cross"] * c + beta["multi"] * u
                 + beta["mono*cross"] * m * c + beta["mono*multi"] * m * u + beta["cross*multi"] * c * u)
            rows.append({"mono": m, "cross": c, "multi": u, "seed": seed, "y": y + noise * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_simplex_grid_at_step_quarter_has_the_15_mixes():
    points = simplex_points(3, 0.25)
    assert len(points) == 15 and np.allclose(points.sum(1), 1)
    assert {tuple(p) for p in points} >= {(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.25, 0.75, 0)}


def test_coefficients_and_intervals_match_the_textbook_formulas():
    data = runs(BETA, noise=0.004)
    fit = fit_mixture(data, "y", NAMES)
    m, c, u = data["mono"].to_numpy(), data["cross"].to_numpy(), data["multi"].to_numpy()
    X = np.column_stack([m, c, u, m * c, m * u, c * u])  # written out, not from the code under test
    y = data["y"].to_numpy()
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    coef = fit.coefficients(alpha=0.05)
    assert np.allclose(coef["estimate"], beta, atol=1e-10)
    resid = y - X @ beta
    dof = len(y) - X.shape[1]
    se = np.sqrt(np.diag(resid @ resid / dof * np.linalg.inv(X.T @ X)))
    q = stats.t.ppf(0.975, dof)
    assert np.allclose(coef["se"], se, rtol=1e-8)
    assert np.allclose(coef["low"], beta - q * se, rtol=1e-8) and np.allclose(coef["high"], beta + q * se, rtol=1e-8)
    truth = np.array(list(BETA.values()))
    assert (np.abs(beta - truth) < 4 * se).all()  # the generating coefficients lie within the noise


def test_best_mix_of_a_known_surface_and_the_interval_of_its_mean():
    # y = x_mono + x_cross + x_multi + 4 x_mono x_cross: on the simplex 1 + 4 x_mono x_cross, largest (2) at (0.5, 0.5, 0)
    beta = {"mono": 1.0, "cross": 1.0, "multi": 1.0, "mono*cross": 4.0, "mono*multi": 0.0, "cross*multi": 0.0}
    fit = fit_mixture(runs(beta, noise=1e-3), "y", NAMES)
    assert np.allclose(fit.best(step=0.05), [0.5, 0.5, 0.0])
    pred = fit.predict(np.array([0.5, 0.5, 0.0]))
    assert pred["low"][0] < 2.0 < pred["high"][0] and pred["high"][0] - pred["low"][0] < 0.01


def test_compare_two_mixes_is_the_contrast_t_test():
    fit = fit_mixture(runs(BETA, noise=0.004), "y", NAMES)
    a, b = np.array([0.5, 0.5, 0.0]), np.array([0.0, 1.0, 0.0])
    got = fit.compare(a, b)
    p = fit.fit.params.to_numpy()
    d = np.array([0.5, 0.5, 0, 0.25, 0, 0]) - np.array([0, 1, 0, 0, 0, 0])
    assert got["diff"] == pytest.approx(d @ p, abs=1e-12)
    cov = fit.fit.cov_params().to_numpy()
    se = float(np.sqrt(d @ cov @ d))
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["p"] == pytest.approx(2 * stats.t.sf(abs(d @ p) / se, fit.fit.df_resid), rel=1e-6)
    same = fit.compare(b, b)
    assert same["diff"] == 0


def test_bad_inputs_are_one_line():
    data = runs(BETA, noise=0.004)
    with pytest.raises(BatchmixError, match="no column 'map'"):
        fit_mixture(data, "map", NAMES)
    with pytest.raises(BatchmixError, match="cannot fit the 6 terms"):
        fit_mixture(data.head(5), "y", NAMES)
    off = data.assign(multi=data["multi"] + 0.1)
    with pytest.raises(BatchmixError, match="do not sum to 1"):
        fit_mixture(off, "y", NAMES)
    with pytest.raises(BatchmixError, match="does not divide 1"):
        simplex_points(3, 0.3)
