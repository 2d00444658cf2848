"""Scheffé's quadratic mixture model of a metric over the batch-type simplex.

A ratio study's factors are shares that sum to 1, so an ordinary quadratic with an intercept is not
identifiable. Scheffé's canonical form drops the intercept and the squares (Scheffé 1958,
"Experiments with mixtures", JRSS B 20; Cornell, "Experiments with Mixtures", 3rd ed. 2002, ch. 2):

    y = sum_i b_i x_i + sum_{i<j} b_ij x_i x_j

b_i is the predicted metric of the pure batch type i; b_ij > 0 means mixing i and j beats the
straight line between them (synergy), b_ij < 0 the opposite. Every run is a row, seeds are
replicates, and the fit is ordinary least squares through statsmodels, which gives the coefficient
intervals, the interval of the mean at any mix and the t-test of a difference between two mixes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from batchmix.core.errors import BatchmixError


def design(x: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The Scheffé quadratic terms of mixes `x` [n, k] (rows on the simplex): x_i, then x_i x_j."""
    x = np.asarray(x, dtype=float)
    columns = {name: x[:, i] for i, name in enumerate(names)}
    for i, j in itertools.combinations(range(len(names)), 2):
        columns[f"{names[i]}*{names[j]}"] = x[:, i] * x[:, j]
    return pd.DataFrame(columns)


def simplex_points(k: int, step: float) -> np.ndarray:
    """Every mix of k shares on the grid `step` (1/step must be an integer)."""
    n = round(1 / step)
    if not np.isclose(n * step, 1.0):
        raise BatchmixError(f"step={step} does not divide 1")
    points = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]
    return np.array(points, dtype=float) / n


@dataclass
class MixtureFit:
    """A fitted model: `fit` is the statsmodels OLS result (its params, conf_int, t_test, ...)."""

    metric: str
    names: list[str]
    fit: object
    n: int

    def coefficients(self, alpha: float = 0.05) -> pd.DataFrame:
        """Each term: estimate, standard error and (1 - alpha) confidence interval."""
        ci = self.fit.conf_int(alpha)
        return pd.DataFrame({"term": self.fit.params.index, "estimate": self.fit.params.values, "se": self.fit.bse.values,
                             "low": ci[0].values, "high": ci[1].values})

    def predict(self, x: np.ndarray, alpha: float = 0.05) -> pd.DataFrame:
        """The fitted mean at mixes `x` with its (1 - alpha) confidence interval."""
        frame = self.fit.get_prediction(design(np.atleast_2d(x), self.names)).summary_frame(alpha=alpha)
        return pd.DataFrame({"mean": frame["mean"].values, "low": frame["mean_ci_lower"].values, "high": frame["mean_ci_upper"].values})

    def best(self, step: float = 0.01, maximize: bool = True) -> np.ndarray:
        """The mix with the best fitted mean on a fine simplex grid."""
        grid = simplex_points(len(self.names), step)
        means = self.fit.predict(design(grid, self.names))
        return grid[int(np.argmax(means) if maximize else np.argmin(means))]

    def compare(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        """The fitted difference mean(a) - mean(b), its standard error and two-sided p-value (a t-test
        of the linear contrast of the coefficients)."""
        contrast = (design(np.atleast_2d(a), self.names) - design(np.atleast_2d(b), self.names)).values
        test = self.fit.t_test(contrast)
        return {"diff": float(np.squeeze(test.effect)), "se": float(np.squeeze(test.sd)), "p": float(np.squeeze(test.pvalue))}


def fit_mixture(runs: pd.DataFrame, metric: str, names: list[str]) -> MixtureFit:
    """Fit `metric` over the share columns `names` of `runs` (one row per run; rows without the metric are left out)."""
    import statsmodels.api as sm

    missing = [c for c in [metric, *names] if c not in runs.columns]
    if missing:
        raise BatchmixError(f"the runs have no column {missing[0]!r}; columns: {sorted(runs.columns)}")
    rows = runs.dropna(subset=[metric, *names])
    x = rows[names].to_numpy(dtype=float)
    if not np.allclose(x.sum(1), 1.0, atol=1e-6):
        raise BatchmixError(f"the shares {names} of some runs do not sum to 1; a mixture model needs mixes")
    terms = design(x, names)
    if len(rows) <= terms.shape[1]:
        raise BatchmixError(f"{metric}: {len(rows)} runs cannot fit the {terms.shape[1]} terms of a quadratic mixture model")
    fit = sm.OLS(rows[metric].to_numpy(dtype=float), terms).fit()
    return MixtureFit(metric=metric, names=list(names), fit=fit, n=len(rows))
