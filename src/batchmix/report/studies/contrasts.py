"""The declared contrasts of the ratio study (issue #28), computed from a study's `results.csv`.

They were written into experiments/ratio_study/README.md before the runs they are read from, so the
results cannot choose their own questions. Each row: one contrast on one metric, with its estimate,
95 % interval, p-value and the Holm-adjusted p over the whole table (statsmodels):

- R1 `cross_minus_hybrid`: mean over seeds at pure cross (0 : 1 : 0) minus at the paper's hybrid
  alpha = 0.5 (0.5 : 0.5 : 0); Welch's t (seeds are replicates, not pairs: a ratio changes every batch);
- R2 `mono_slope`: the OLS slope of the metric on the mono share over every grid run (per unit share:
  from mono share 0 to 1);
- R3 `cross_minus_multi`: pure cross minus pure multi, as R1.

`before_after` sets two such tables side by side (the id-only mask's committed one against a rerun's):
R4, the change, with an interval from both standard errors (t on the smaller of the two degrees of
freedom: conservative with 3 seeds a side).

    python -m batchmix.report.studies.contrasts experiments/ratio_study/results.csv --out contrasts.csv
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from batchmix.core.errors import BatchmixError, error_line

ALPHA = 0.05
GRID = "grid"
SHARES = ("ratio_mono", "ratio_cross", "ratio_multi")
PURE_CROSS, HYBRID, PURE_MULTI = (0.0, 1.0, 0.0), (0.5, 0.5, 0.0), (0.0, 0.0, 1.0)
COLUMNS = ("contrast", "metric", "estimate", "ci_low", "ci_high", "se", "df", "p", "p_holm", "n")


@dataclass(frozen=True)
class Declared:
    contrast: str
    metrics: tuple[str, ...]


# The declaration in experiments/ratio_study/README.md ("Declared contrasts of the second study"): T = the
# reported split (no prefix), M = `mlqa-r/`.
DECLARED = (
    Declared("R1 cross_minus_hybrid", ("map/multi", "mlqa-r/map/multi")),
    Declared("R2 mono_slope", ("map/multi", "mlqa-r/map/mono", "bias/rank_distance", "mlqa-r/bias/rank_distance")),
    Declared("R3 cross_minus_multi", ("map/multi", "mlqa-r/map/multi")),
)


def grid_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The grid's rows (results.csv of a ratio study: `source` grid; a table without `source` is all grid)."""
    runs = results[results["source"] == GRID] if "source" in results else results
    missing = [c for c in SHARES if c not in runs]
    if missing:
        raise BatchmixError(f"results have no {missing} columns; pass a ratio study's results.csv")
    return runs


def at(runs: pd.DataFrame, mix: tuple[float, ...], metric: str) -> np.ndarray:
    """The metric of every run at `mix` (one value per seed)."""
    mask = np.all([np.isclose(runs[c], share) for c, share in zip(SHARES, mix)], axis=0)
    return runs.loc[mask, metric].dropna().to_numpy(dtype=float)


def difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """mean(a) - mean(b): Welch's interval and p (statsmodels CompareMeans, unequal variances)."""
    if len(a) < 2 or len(b) < 2:
        raise BatchmixError(f"a difference of means needs >= 2 runs a side, got {len(a)} and {len(b)}; run more seeds")
    compare = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    _, p, df = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(alpha=ALPHA, usevar="unequal")
    estimate = float(a.mean() - b.mean())
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "se": se, "df": df, "p": p, "n": len(a) + len(b)}


def slope(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The OLS slope of y on x (with an intercept): interval and p from statsmodels."""
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2 or len(x) < 3:
        raise BatchmixError(f"a slope needs >= 3 runs at >= 2 shares, got {len(x)} runs at {len(np.unique(x))} shares")
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    low, high = fit.conf_int(alpha=ALPHA)[1]
    return {"estimate": float(fit.params[1]), "ci_low": low, "ci_high": high, "se": float(fit.bse[1]),
            "df": float(fit.df_resid), "p": float(fit.pvalues[1]), "n": len(x)}


def ratio_contrasts(results: pd.DataFrame) -> pd.DataFrame:
    """R1-R3 on every declared metric the results hold, Holm-adjusted over the table."""
    runs = grid_runs(results)
    rows = []
    for declared in DECLARED:
        for metric in declared.metrics:
            if metric not in runs:
                continue
            if declared.contrast.startswith("R2"):
                row = slope(runs["ratio_mono"].to_numpy(dtype=float), runs[metric].to_numpy(dtype=float))
            else:
                other = HYBRID if declared.contrast.startswith("R1") else PURE_MULTI
                row = difference(at(runs, PURE_CROSS, metric), at(runs, other, metric))
            rows.append({"contrast": declared.contrast, "metric": metric, **row})
    if not rows:
        raise BatchmixError("results hold none of the declared contrasts' metrics (map/multi, ...)")
    table = pd.DataFrame(rows)
    table["p_holm"] = multipletests(table["p"], alpha=ALPHA, method="holm")[1]
    return table[list(COLUMNS)]


def before_after(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """R4: each contrast of `after` minus the same one of `before` (rows in both), with its interval."""
    both = before.merge(after, on=["contrast", "metric"], suffixes=("_before", "_after"))
    change = both["estimate_after"] - both["estimate_before"]
    se = np.sqrt(both["se_before"] ** 2 + both["se_after"] ** 2)
    t = stats.t.ppf(1 - ALPHA / 2, np.minimum(both["df_before"], both["df_after"]))
    return pd.DataFrame({"contrast": both["contrast"], "metric": both["metric"],
                         "before": both["estimate_before"], "before_low": both["ci_low_before"], "before_high": both["ci_high_before"],
                         "after": both["estimate_after"], "after_low": both["ci_low_after"], "after_high": both["ci_high_after"],
                         "change": change, "change_low": change - t * se, "change_high": change + t * se})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchmix.report.studies.contrasts", description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a ratio study's results.csv")
    parser.add_argument("--out", required=True, help="the contrasts CSV to write")
    args = parser.parse_args(argv)
    try:
        path = Path(args.results)
        if not path.is_file():
            raise BatchmixError(f"{path} not found; pass a ratio study's results.csv (e.g. experiments/ratio_study/results.csv)")
        table = ratio_contrasts(pd.read_csv(path))
    except BatchmixError as err:
        print(error_line(err), file=sys.stderr)
        return 2
    table.to_csv(args.out, index=False, float_format="%.6g")
    print(f"wrote {args.out} ({len(table)} contrasts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
