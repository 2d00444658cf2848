"""Two factors on the paper's edge (experiments/edge_factors/, issue #28): does the ratio study's answer
survive full fine-tuning (depth) and a larger batch at equal pairs seen (batch)?

Two steps, so the tables and fits can be regenerated from the repo alone:

    python -m batchmix.report.studies.edge_factors collect --runs SWEEP --arms batch depth \\
        --reference experiments/ratio_study/results.csv --out DIR          # run folders -> CSVs
    python -m batchmix.report.studies.edge_factors report --from-results DIR --markdown DIR/README.md

`collect` writes `results.csv` (one row per run, `arm` = reference | depth | batch; the reference rows are
the ratio study's grid rows at the 6 edge ratios, their curves from its curves.csv beside it),
`curves.csv` (`batchmix.report.studies.results_csv`) and `timing.csv` (run.sh's timing.log).

The design is the paper's edge (mono share alpha in {0, .25, .5, .75, 1}, no multi) plus multi-only, so of
the Scheffé quadratic only mono, cross, multi and mono·cross are estimable; each factor is fitted against
the reference level by statsmodels OLS over every run (seeds as replicates):

    y ~ 0 + mono + cross + multi + mono:cross + f:(mono + cross + multi + mono:cross)     (f = 1 for the arm)

The f-terms (gamma) are the arm's difference from the reference at each term, so the declared contrasts
(experiments/ratio_study/README.md, "Declared contrasts of the second study") are linear contrasts of the
fit (statsmodels `t_test`): F1 the factor's main effect, the mean over the 6 design ratios of the fitted
difference; F2 its interaction with the mono share, gamma_mono - gamma_cross (the effect at pure mono
minus at pure cross). F3 reads the first study's order within each level (Welch's difference pure cross
minus alpha = 0.5, the OLS slope of MLQA-R map/mono on alpha: `contrasts.difference` / `contrasts.slope`).
F4 is each level's peak of its val map/multi fit on the edge, with the test and MLQA-R fits read there.
The p-values of F1-F3 are Holm-adjusted together. Only val numbers choose (F4); nothing is chosen on
test or MLQA-R numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

from batchmix.core.errors import BatchmixError, error_line
from batchmix.report.aggregate import by_ratio, ratio_label
from batchmix.report.markdown import md_table, replace_block
from batchmix.report.model import ci, fmt_mean_std, value
from batchmix.report.studies.baselines_report import methods_in
from batchmix.report.studies.contrasts import ALPHA, HYBRID, PURE_CROSS, SHARES, at, difference, slope
from batchmix.report.studies.ratio_study import CHOOSE_ON, FLAT_FRACTION, FLAT_GAIN, flattening
from batchmix.report.studies.results_csv import CURVES, RESULTS, TIMING, read_results, write_tables

ARM = "arm"
REFERENCE = "reference"
ARMS = ("depth", "batch")
LEVELS = {  # what each level trains (conf/experiment/ratio_study.yaml, edge_depth.yaml, edge_batch.yaml)
    REFERENCE: "top 2 layers, batch 16 × 160 steps (the ratio study's grid)",
    "depth": "all 12 layers, batch 16 × 160 steps",
    "batch": "top 2 layers, batch 64 × 40 steps",
}
FACTORS = {"depth": "depth: all 12 layers against the top 2", "batch": "batch: 64 × 40 steps against 16 × 160 (equal pairs seen)"}
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
MULTI_ONLY = (0.0, 0.0, 1.0)
# The 6 design ratios (mono, cross, multi): conf/sweep/paper_edge.yaml's points, in its order.
EDGE = (*((a, 1.0 - a, 0.0) for a in ALPHAS), MULTI_ONLY)
TERMS = ("mono", "cross", "multi")  # the share columns ratio_<term> (SHARES), as the formula names them
FORMULA = "y ~ 0 + mono + cross + multi + mono:cross + f:(mono + cross + multi + mono:cross)"
LEVEL_FORMULA = "y ~ 0 + mono + cross + multi + mono:cross"
PEAK_STEP = 0.01  # the alpha grid F4 searches


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    digits: int  # of a value; a contrast gets one more for mAP


T_MULTI = Metric("map/multi", "T map/multi", 3)
M_MULTI = Metric("mlqa-r/map/multi", "M map/multi", 3)
M_MONO = Metric("mlqa-r/map/mono", "M map/mono", 3)
M_RANK = Metric("mlqa-r/bias/rank_distance", "M rank distance", 1)
FACTOR_METRICS = (T_MULTI, M_MULTI, M_MONO, M_RANK)  # F1, F2 (declared)
VAL = Metric(CHOOSE_ON, "val map/multi", 3)
# The per-level table: T = XQuAD-R test articles (no prefix), M = all of MLQA-R (`mlqa-r/`).
TABLE_METRICS = (*(Metric(f"{p}map/{s}", f"{n} map/{s}", 3) for p, n in (("", "T"), ("mlqa-r/", "M")) for s in ("mono", "cross", "multi")),
                 Metric("bias/rank_distance", "T rank distance", 1), M_RANK, VAL)


def _contrast_digits(metric: Metric) -> int:
    return metric.digits + (1 if metric.digits == 3 else 0)


# --- collect ----------------------------------------------------------------------------------
def edge_index(runs: pd.DataFrame) -> np.ndarray:
    """Each row's position in EDGE (alpha ascending, multi-only last); -1 off the edge."""
    index = np.full(len(runs), -1)
    for i, point in enumerate(EDGE):
        index[np.all([np.isclose(runs[c].to_numpy(dtype=float), share) for c, share in zip(SHARES, point)], axis=0)] = i
    return index


def on_edge(runs: pd.DataFrame) -> pd.Series:
    """Which rows sit at one of the 6 design ratios."""
    return pd.Series(edge_index(runs) >= 0, index=runs.index)


def _ordered(results: pd.DataFrame) -> pd.DataFrame:
    """Rows by level (reference, depth, batch), ratio (as EDGE), seed; columns: what identifies a run, the metrics, conv/."""
    order = {name: i for i, name in enumerate((REFERENCE, *ARMS))}
    results = results.assign(_level=results[ARM].map(order), _edge=edge_index(results))
    results = results.sort_values(["_level", "_edge", "seed", "run"], ignore_index=True)
    front = [c for c in ("run", ARM, "seed", "train/steps", *SHARES) if c in results]
    rest = [c for c in results.columns if c not in front and c not in ("_level", "_edge")]
    return results[front + sorted(c for c in rest if not c.startswith("conv/")) + sorted(c for c in rest if c.startswith("conv/"))]


def reference_rows(reference: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ratio study's grid rows at the 6 edge ratios (`arm` reference) and their curves, runs renamed `reference/<run>`."""
    path = Path(reference)
    curves_path = path.with_name(CURVES)
    for p in (path, curves_path):
        if not p.is_file():
            raise BatchmixError(f"{p} not found; pass a ratio study's results.csv with its curves.csv beside it "
                                "(--reference experiments/ratio_study/results.csv)")
    runs = pd.read_csv(path, dtype={"run": str}).copy()  # copy: one block per dtype (pandas reads one per column)
    if "source" in runs:
        runs = runs[runs["source"] == "grid"].drop(columns="source")
    if any(c not in runs for c in SHARES):
        raise BatchmixError(f"{path} has no share columns {list(SHARES)}; pass a ratio study's results.csv")
    runs = runs[on_edge(runs)]
    if runs.empty:
        raise BatchmixError(f"{path} has no grid rows at the paper's edge ratios ({', '.join(ratio_label(*p) for p in EDGE)}); "
                            "pass a ratio study's results.csv whose grid holds them (sweep=simplex_grid, step 0.25)")
    curves = pd.read_csv(curves_path, dtype={"run": str, "batch_type": str}, keep_default_na=False, na_values={"value": [""]})
    curves = curves[curves["run"].isin(runs["run"])].assign(run=lambda c: REFERENCE + "/" + c["run"])
    return runs.assign(run=REFERENCE + "/" + runs["run"], **{ARM: REFERENCE}), curves


def collect(runs_dir: str | os.PathLike, arms: list[str], reference: str | os.PathLike, out: str | os.PathLike,
            timing: str | os.PathLike | None = None) -> list[Path]:
    """Write results.csv, curves.csv (and timing.csv) of the arms' run folders (`<runs_dir>/<arm>/seed<S>/<n>`)
    and the reference rows into `out`."""
    from batchmix.report.studies.results_csv import sweep_tables

    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise BatchmixError(f"--arms {' '.join(arms) or '(none)'}: give one or more of {', '.join(ARMS)}")
    reference_runs, reference_curves = reference_rows(reference)
    tables, curves = [reference_runs], [reference_curves]
    for arm in arms:
        found = sweep_tables(Path(runs_dir) / arm) if (Path(runs_dir) / arm).is_dir() else None
        if found is None:
            raise BatchmixError(f"no complete run of arm {arm!r} under {Path(runs_dir) / arm}; run it first "
                                f"(ARMS={arm} bash experiments/edge_factors/run.sh) or leave it out (--arms ...)")
        table, part = found
        off = table[~on_edge(table)]
        if len(off):
            raise BatchmixError(f"{Path(runs_dir) / arm / off['run'].iloc[0]} is at ratio {ratio_label(*off[list(SHARES)].iloc[0])}, "
                                "off the paper's edge; keep only sweep=paper_edge runs under the arm's folder")
        if methods_in(table) and not methods_in(reference_runs):  # every run since the answer-aware rerun scores them
            raise BatchmixError(f"{reference} has no training-free baseline columns ({methods_in(table)[0]}/map/multi, ...) while the {arm} runs do: "
                                "it predates the ratio study's answer-aware rerun (issue #28); collect against the rerun's results.csv")
        tables.append(table.assign(run=arm + "/" + table["run"], **{ARM: arm}))
        curves.append(part.assign(run=arm + "/" + part["run"]))
    results = _ordered(pd.concat(tables, ignore_index=True).copy())
    return write_tables(out, results, pd.concat(curves, ignore_index=True), timing)


# --- checks -----------------------------------------------------------------------------------
def check_design(runs: pd.DataFrame, arms: list[str] | None = None, where: str = RESULTS) -> list[str]:
    """The arms to report (`arms`, default every arm present), after checking that the reference and each arm
    hold >= 2 seeds at each of the 6 design ratios; one error line otherwise."""
    if ARM not in runs:
        raise BatchmixError(f"{where} has no `{ARM}` column: not an edge study's results; write it with "
                            "`python -m batchmix.report.studies.edge_factors collect`")
    present = [a for a in ARMS if (runs[ARM] == a).any()]
    if arms is None:
        arms = present
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise BatchmixError(f"--arms {' '.join(arms)}: unknown {unknown[0]!r}; give one or more of {', '.join(ARMS)}")
    missing = [a for a in arms if a not in present]
    if missing or not arms:
        name = missing[0] if missing else ' or '.join(ARMS)
        raise BatchmixError(f"{where} has no runs of arm {name}; run it (ARMS={missing[0] if missing else 'batch'} bash "
                            f"experiments/edge_factors/run.sh) or report the arms it holds (--arms {' '.join(present) or '...'})")
    if not (runs[ARM] == REFERENCE).any() or not on_edge(runs[runs[ARM] == REFERENCE]).any():
        raise BatchmixError(f"{where} has no reference rows at the edge ratios; collect with --reference <a ratio study's results.csv>")
    for level in (REFERENCE, *arms):
        rows = runs[runs[ARM] == level]
        for point in EDGE:
            seeds = sorted({int(s) for s in at(rows, point, "seed")})
            if len(seeds) < 2:
                fix = ("collect with a ratio study's results.csv that has them" if level == REFERENCE
                       else f"run more seeds (ARMS={level} SEEDS=... bash experiments/edge_factors/run.sh)")
                raise BatchmixError(f"{where}: {level} has {len(seeds)} seed(s) at ratio {ratio_label(*point)} "
                                    f"({', '.join(map(str, seeds)) or 'none'}), fewer than 2; {fix}")
    return arms


# --- the fits ---------------------------------------------------------------------------------
def _frame(runs: pd.DataFrame, metric: str, f: float) -> pd.DataFrame:
    return pd.DataFrame({"mono": runs["ratio_mono"].to_numpy(float), "cross": runs["ratio_cross"].to_numpy(float),
                         "multi": runs["ratio_multi"].to_numpy(float), "f": f, "y": runs[metric].to_numpy(float)}).dropna()


@dataclass
class FactorFit:
    """The OLS fit of one metric over the reference rows (f = 0) and one arm's (f = 1); `fit` is statsmodels'."""

    arm: str
    metric: str
    fit: object

    def row(self, point: tuple[float, float, float], f: float) -> np.ndarray:
        """The fit's regressors at a mix and level: each term the product of its factors' values."""
        values = dict(zip(TERMS, point), f=f)
        return np.array([math.prod(values[name] for name in term.split(":")) for term in self.fit.model.exog_names])

    def test(self, weights: np.ndarray) -> dict[str, float]:
        """A linear contrast of the coefficients: estimate, 95 % interval, standard error, df and p (t_test)."""
        t = self.fit.t_test(weights[None, :])
        low, high = np.asarray(t.conf_int(alpha=ALPHA)).ravel()
        return {"estimate": float(np.squeeze(t.effect)), "ci_low": float(low), "ci_high": float(high),
                "se": float(np.squeeze(t.sd)), "df": float(self.fit.df_resid), "p": float(np.squeeze(t.pvalue)), "n": int(self.fit.nobs)}

    def effect_at(self, point: tuple[float, float, float]) -> np.ndarray:
        """The weights of the fitted difference arm minus reference at one mix."""
        return self.row(point, 1.0) - self.row(point, 0.0)

    def main_effect(self) -> dict[str, float]:
        """F1: the fitted difference arm minus reference, averaged over the 6 design ratios."""
        return self.test(np.mean([self.effect_at(p) for p in EDGE], axis=0))

    def mono_interaction(self) -> dict[str, float]:
        """F2: gamma_mono - gamma_cross, the factor's effect at pure mono minus at pure cross."""
        return self.test(self.effect_at((1.0, 0.0, 0.0)) - self.effect_at(PURE_CROSS))

    def level_mean(self, f: float) -> float:
        """The fitted mean over the 6 design ratios at one level."""
        return float(np.mean([self.row(p, f) for p in EDGE], axis=0) @ self.fit.params.to_numpy())


def fit_factor(runs: pd.DataFrame, arm: str, metric: str) -> FactorFit:
    """`FORMULA` over the reference rows and `arm`'s rows of `runs` (rows without the metric left out)."""
    data = pd.concat([_frame(runs[runs[ARM] == REFERENCE], metric, 0.0), _frame(runs[runs[ARM] == arm], metric, 1.0)], ignore_index=True)
    if len(data) <= 8:
        raise BatchmixError(f"{metric}: {len(data)} runs of reference and {arm} cannot fit the 8 terms of {FORMULA}; run more seeds")
    return FactorFit(arm, metric, smf.ols(FORMULA, data).fit())


def declared_family(runs: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """F1-F3 for each arm on the declared metrics the runs hold, one row each (`id`, `level`, `metric`,
    estimate, 95 % interval, p), with `p_holm` over the whole table. F3's reference rows appear once."""
    rows = []
    for arm in arms:
        for metric in FACTOR_METRICS:
            if metric.column not in runs or runs.loc[runs[ARM].isin([REFERENCE, arm]), metric.column].isna().all():
                continue
            fitted = fit_factor(runs, arm, metric.column)
            rows.append({"id": "F1", "level": arm, "metric": metric.column, **fitted.main_effect(),
                         "reference": fitted.level_mean(0.0), "arm": fitted.level_mean(1.0), "r2": fitted.fit.rsquared})
            rows.append({"id": "F2", "level": arm, "metric": metric.column, **fitted.mono_interaction()})
    for level in (REFERENCE, *arms):
        part = runs[runs[ARM] == level]
        if T_MULTI.column in part:
            rows.append({"id": "F3", "level": level, "metric": T_MULTI.column, "contrast": "cross_minus_hybrid",
                         **difference(at(part, PURE_CROSS, T_MULTI.column), at(part, HYBRID, T_MULTI.column))})
        if M_MONO.column in part:
            edge = part[np.isclose(part["ratio_multi"], 0.0)]
            rows.append({"id": "F3", "level": level, "metric": M_MONO.column, "contrast": "mono_slope",
                         **slope(edge["ratio_mono"].to_numpy(float), edge[M_MONO.column].to_numpy(float))})
    if not rows:
        raise BatchmixError(f"the results hold none of the declared metrics ({', '.join(m.column for m in FACTOR_METRICS)})")
    table = pd.DataFrame(rows)
    table["p_holm"] = multipletests(table["p"], alpha=ALPHA, method="holm")[1]
    return table


def best_mix(runs: pd.DataFrame, level: str) -> dict[str, object] | None:
    """F4: the alpha of the peak of the level's val map/multi fit on the edge (a PEAK_STEP grid), and each
    metric's fitted mean with its 95 % interval there (val, T and M map/multi); None without val numbers."""
    part = runs[runs[ARM] == level]
    if VAL.column not in part or part[VAL.column].isna().all():
        return None
    grid = np.round(np.arange(0.0, 1.0 + PEAK_STEP / 2, PEAK_STEP), 6)
    points = pd.DataFrame({"mono": grid, "cross": 1.0 - grid, "multi": 0.0})
    val_fit = smf.ols(LEVEL_FORMULA, _frame(part, VAL.column, 0.0)).fit()
    alpha = float(grid[int(np.argmax(val_fit.predict(points).to_numpy()))])
    out: dict[str, object] = {"level": level, "alpha": alpha}
    for metric in (VAL, T_MULTI, M_MULTI):
        if metric.column in part and part[metric.column].notna().any():
            fit = val_fit if metric is VAL else smf.ols(LEVEL_FORMULA, _frame(part, metric.column, 0.0)).fit()
            frame = fit.get_prediction(pd.DataFrame({"mono": [alpha], "cross": [1.0 - alpha], "multi": [0.0]})).summary_frame(alpha=ALPHA)
            out[metric.column] = (float(frame["mean"].iloc[0]), float(frame["mean_ci_lower"].iloc[0]), float(frame["mean_ci_upper"].iloc[0]))
    return out


# --- the README block -------------------------------------------------------------------------
def _ratio_name(row: pd.Series) -> str:
    mono, cross, multi = (float(row[c]) for c in SHARES)
    return "multi only" if math.isclose(multi, 1.0) else f"α = {mono:g}"


def _levels(arms: list[str]) -> list[str]:
    return [REFERENCE, *(a for a in ARMS if a in arms)]


def _per_ratio(runs: pd.DataFrame, levels: list[str], metrics: list[Metric]) -> list[list[str]]:
    rows = []
    for level in levels:
        table = by_ratio(runs[runs[ARM] == level], [m.column for m in metrics])
        table = table.assign(_edge=edge_index(table))
        for _, r in table.sort_values("_edge").iterrows():
            rows.append([level, _ratio_name(r), r["ratio"], int(r["n"])]
                        + [fmt_mean_std(r.get(m.column, math.nan), r.get(f"{m.column}/std", math.nan), int(r["n"]), m.digits) for m in metrics])
    return rows


def _timing_section(results_dir: Path) -> list[str]:
    path = results_dir / TIMING
    if not path.is_file():
        return []
    timing = pd.read_csv(path)
    total = int(timing["seconds"].sum())
    return ["### Wall time (run.sh's timing.log; one row per chunk: an arm and a seed, 6 runs on 2 workers)", "",
            md_table(["stage", "seconds", "minutes"], [[r.stage, int(r.seconds), f"{r.seconds / 60:.1f}"] for r in timing.itertuples()]
                     + [["**total**", total, f"**{total / 60:.1f}**"]]), ""]


def _design_section(runs: pd.DataFrame, levels: list[str]) -> list[str]:
    rows = []
    for level in levels:
        part = runs[runs[ARM] == level]
        steps = sorted({int(s) for s in part["train/steps"].dropna()}) if "train/steps" in part else []
        seeds = sorted({int(s) for s in part["seed"].dropna()})
        rows.append([level, LEVELS[level], "/".join(map(str, steps)) or "–", len(part), ", ".join(map(str, seeds))])
    return ["### The levels", "", md_table(["level", "trains", "steps", "runs", "seeds"], rows), ""]


def _flattening_section(runs: pd.DataFrame, curves: pd.DataFrame, levels: list[str]) -> list[str]:
    """Issue #16's criterion per run: val map/multi gains < FLAT_GAIN over the last FLAT_FRACTION of its steps."""
    flat = flattening(curves, runs)
    seeds = sorted({int(s) for s in flat["seed"].dropna()})
    rows, fails = [], []
    for level in levels:
        part = flat[flat[ARM] == level]
        for point in EDGE:
            here = part[np.all([np.isclose(part[c], s) for c, s in zip(SHARES, point)], axis=0)]
            cells = []
            for seed in seeds:
                gain = here.loc[here["seed"] == seed, "flat/gain"]
                if gain.empty:
                    cells.append("–")
                elif math.isnan(gain.iloc[0]):
                    cells.append("no val point at 80 %")
                    fails.append(f"{level} {ratio_label(*point)} seed {seed}")
                elif gain.iloc[0] >= FLAT_GAIN:
                    cells.append(f"{gain.iloc[0]:+.4f} **not flattened**")
                    fails.append(f"{level} {ratio_label(*point)} seed {seed}")
                else:
                    cells.append(f"{gain.iloc[0]:+.4f}")
            rows.append([level, ratio_label(*point), *cells])
    return [f"### Has val map/multi flattened? (gain over the last {FLAT_FRACTION:.0%} of each run's steps; criterion: < {FLAT_GAIN})", "",
            f"{len(flat) - len(fails)} of {len(flat)} runs meet it; " + (f"not flattened: {', '.join(fails)}." if fails else "every run has flattened."), "",
            md_table(["level", "ratio", *(f"seed {s}" for s in seeds)], rows), ""]


def _map_section(runs: pd.DataFrame, levels: list[str]) -> list[str]:
    metrics = [m for m in TABLE_METRICS if m.column in runs]
    out = ["### mAP and language bias per level and ratio (mean ± sample std over seeds)", "",
           "T = XQuAD-R test articles, M = all of MLQA-R (zero-shot); rank distance: worst minus best rank of a question's "
           "answers across languages (lower = less biased).", "",
           md_table(["level", "ratio", "mono : cross : multi", "seeds", *(m.label for m in metrics)], _per_ratio(runs, levels, metrics)), ""]
    methods = methods_in(runs)
    if methods:
        fixes = [Metric(f"{p}{b}/{k}", f"{b} {n} {label}", d) for b in methods
                 for p, n, k, label, d in (("", "T", "map/multi", "map/multi", 3), ("mlqa-r/", "M", "map/multi", "map/multi", 3),
                                           ("mlqa-r/", "M", "bias/rank_distance", "rank distance", 1))]
        fixes = [m for m in fixes if m.column in runs]
        out += ["### The training-free fixes applied to each trained run (Shift, LIR, per-language centring; fitted on "
                "training-article text only; mean ± sample std over seeds)", "",
                md_table(["level", "ratio", "mono : cross : multi", "seeds", *(m.label for m in fixes)], _per_ratio(runs, levels, fixes)), ""]
    return out


def _labels() -> dict[str, Metric]:
    return {m.column: m for m in (*FACTOR_METRICS, VAL)}


def _f1_f2_sections(family: pd.DataFrame) -> list[str]:
    labels = _labels()
    f1 = family[family["id"] == "F1"]
    f2 = family[family["id"] == "F2"]
    if f1.empty:
        return []

    def est(r) -> str:
        return ci(r.estimate, r.ci_low, r.ci_high, _contrast_digits(labels[r.metric]))

    def holds(r) -> str:
        return "holds" if r.ci_low > 0 or r.ci_high < 0 else "within noise"

    return ["### F1: each factor's main effect (arm minus reference, the fitted difference averaged over the 6 ratios)", "",
            f"OLS `{FORMULA}` over the reference rows and the arm's (f = 1), seeds as replicates (statsmodels); the effect is "
            "a linear contrast of the f-terms (`t_test`), [95 % CI]; p Holm-adjusted over F1–F3. \"Holds\": the interval excludes 0.", "",
            md_table(["factor", "metric", "reference (fitted mean)", "arm (fitted mean)", "main effect [95 % CI]", "p", "p (Holm)", "verdict", "R²"],
                     [[FACTORS[r.level], labels[r.metric].label, value(r.reference, labels[r.metric].digits), value(r.arm, labels[r.metric].digits),
                       est(r), f"{r.p:.3g}", f"{r.p_holm:.3g}", holds(r), f"{r.r2:.2f}"] for r in f1.itertuples()]), "",
            "### F2: each factor × the mono share (γ_mono − γ_cross: the factor's effect at pure mono minus at pure cross)", "",
            "> 0: the factor helps mono-heavy mixes more (or hurts them less) than cross-heavy ones. Same fit as F1.", "",
            md_table(["factor", "metric", "interaction [95 % CI]", "p", "p (Holm)", "verdict"],
                     [[FACTORS[r.level], labels[r.metric].label, est(r), f"{r.p:.3g}", f"{r.p_holm:.3g}", holds(r)] for r in f2.itertuples()]), ""]


def _r1_verdict(r) -> str:
    return "pure cross ahead" if r.ci_low > 0 else "α = 0.5 ahead" if r.ci_high < 0 else "tied within the interval"


def _slope_verdict(r) -> str:
    return "a drop" if r.ci_high < 0 else "a rise" if r.ci_low > 0 else "no slope beyond noise"


def _f3_section(family: pd.DataFrame, arms: list[str]) -> list[str]:
    f3 = family[family["id"] == "F3"]
    if f3.empty:
        return []
    labels = _labels()
    rows = [[r.level, "pure cross minus α = 0.5" if r.contrast == "cross_minus_hybrid" else "slope on α (the 5 edge ratios)",
             labels[r.metric].label, ci(r.estimate, r.ci_low, r.ci_high, _contrast_digits(labels[r.metric])), f"{r.p:.3g}", f"{r.p_holm:.3g}",
             _r1_verdict(r) if r.contrast == "cross_minus_hybrid" else _slope_verdict(r)] for r in f3.itertuples()]
    by = {(r.level, r.contrast): r for r in f3.itertuples()}
    sentences = []
    for arm in arms:
        parts = []
        ref, own = by.get((REFERENCE, "cross_minus_hybrid")), by.get((arm, "cross_minus_hybrid"))
        if ref is not None and own is not None:
            a, b = _r1_verdict(ref), _r1_verdict(own)
            answer = ("the order does not change" if a == b else "yes: α = 0.5 overtakes pure cross" if b == "α = 0.5 ahead"
                      else "α = 0.5 does not overtake, but pure cross's lead is not resolved at this level" if b == "tied within the interval"
                      else "pure cross moves ahead")
            parts.append(f"on T map/multi, {a} at the reference ({ci(ref.estimate, ref.ci_low, ref.ci_high, 4)}) and {b} with "
                         f"{arm} ({ci(own.estimate, own.ci_low, own.ci_high, 4)}): {answer}")
        ref, own = by.get((REFERENCE, "mono_slope")), by.get((arm, "mono_slope"))
        if ref is not None and own is not None:
            a, b = _slope_verdict(ref), _slope_verdict(own)
            answer = ("the mono drop appears" if b == "a drop" and a != b else "the mono drop is there at both levels" if a == b == "a drop"
                      else "the mono drop goes" if a == "a drop" else "no mono drop at either level" if b != "a drop" and a == b
                      else "the slope changes, no mono drop")
            parts.append(f"on M map/mono, {a} at the reference ({ci(ref.estimate, ref.ci_low, ref.ci_high, 4)} per unit of α) and "
                         f"{b} with {arm} ({ci(own.estimate, own.ci_low, own.ci_high, 4)}): {answer}")
        if parts:
            sentences.append(f"- **{FACTORS[arm]}**: " + "; ".join(parts) + ".")
    return ["### F3: does the order of the ratios change within each level?", "",
            "Pure cross minus α = 0.5: Welch's difference of means over seeds; the slope: OLS of M map/mono on α over every run "
            "of the 5 edge ratios; [95 % CI], p Holm-adjusted over F1–F3. A verdict needs the interval to exclude 0.", "",
            md_table(["level", "contrast", "metric", "estimate [95 % CI]", "p", "p (Holm)", "verdict"], rows), "", *sentences, ""]


def _f4_section(runs: pd.DataFrame, levels: list[str]) -> list[str]:
    peaks = [p for p in (best_mix(runs, level) for level in levels) if p is not None]
    if not peaks:
        return []

    def read(peak, metric: Metric) -> str:
        return ci(*peak[metric.column], metric.digits) if metric.column in peak else "–"

    return ["### F4: the best mix on the edge per level (the peak of the val map/multi fit)", "",
            f"Each level's own fit `{LEVEL_FORMULA}` (statsmodels OLS over its runs), searched over α on the mono–cross edge in "
            f"steps of {PEAK_STEP}; T and M are read at the val peak, never used to choose it [95 % CI of the fitted mean].", "",
            md_table(["level", "α at the val peak", "mono : cross : multi", "val map/multi", "T map/multi there", "M map/multi there"],
                     [[p["level"], f"{p['alpha']:.2f}", f"{p['alpha']:.2f} : {1 - p['alpha']:.2f} : 0", read(p, VAL), read(p, T_MULTI), read(p, M_MULTI)]
                      for p in peaks]), ""]


def edge_block(results_dir: str | os.PathLike, arms: list[str] | None = None, command: str | None = None) -> str:
    """The README block of the edge study in `results_dir` (results.csv, curves.csv, timing.csv)."""
    results_dir = Path(results_dir)
    runs, curves = read_results(results_dir)
    runs = runs.copy().assign(ratio=[ratio_label(*r) for r in runs[list(SHARES)].itertuples(index=False)])
    arms = check_design(runs, arms, str(results_dir / RESULTS))
    runs = runs[runs[ARM].isin([REFERENCE, *arms]) & on_edge(runs)]
    levels = _levels(arms)
    counts = "; ".join(f"{level} {int((runs[ARM] == level).sum())}" for level in levels)
    family = declared_family(runs, arms)
    out = [f"_Generated by `{command or 'python -m batchmix.report.studies.edge_factors report --from-results <dir> --markdown <README>'}` "
           f"on {time.strftime('%Y-%m-%d')} from `{RESULTS}` ({len(runs)} runs: {counts}) and `{CURVES}`. Do not edit by hand._", ""]
    out += _timing_section(results_dir)
    out += _design_section(runs, levels)
    out += _flattening_section(runs, curves, levels)
    out += _map_section(runs, levels)
    out += _f1_f2_sections(family)
    out += _f3_section(family, arms)
    out += _f4_section(runs, levels)
    return "\n".join(out).rstrip() + "\n"


def write_edge_readme(results_dir: str | os.PathLike, readme: str | os.PathLike, arms: list[str] | None = None,
                      command: str | None = None) -> Path:
    """Regenerate the marked block of `readme` from the CSVs in `results_dir` (prose outside the markers is kept)."""
    return replace_block(Path(readme), edge_block(results_dir, arms, command))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchmix.report.studies.edge_factors", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run folders + the ratio study's reference rows -> results.csv, curves.csv, timing.csv")
    c.add_argument("--runs", required=True, help="the study's SWEEP_DIR: <runs>/<arm>/seed<S>/<n> run folders")
    c.add_argument("--arms", nargs="+", default=list(ARMS), help=f"arms to collect (default: {' '.join(ARMS)})")
    c.add_argument("--reference", default="experiments/ratio_study/results.csv",
                   help="a ratio study's results.csv (its curves.csv beside it): the grid rows at the edge ratios")
    c.add_argument("--timing", default=None, help="run.sh's timing.log")
    c.add_argument("--out", required=True)
    r = sub.add_parser("report", help="results.csv + curves.csv -> the README block")
    r.add_argument("--from-results", required=True, metavar="DIR")
    r.add_argument("--markdown", required=True, metavar="README")
    r.add_argument("--arms", nargs="+", default=None, help="arms to report (default: every arm the results hold)")
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            for path in collect(args.runs, args.arms, args.reference, args.out, args.timing):
                print(path)
        else:
            command = (f"python -m batchmix.report.studies.edge_factors report --from-results {args.from_results} --markdown {args.markdown}"
                       + (f" --arms {' '.join(args.arms)}" if args.arms else ""))
            print(f"edge study tables: {write_edge_readme(args.from_results, args.markdown, args.arms, command)}")
    except BatchmixError as err:
        return error_line(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
