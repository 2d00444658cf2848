"""The ratio study over the whole mono : cross : multi simplex (experiments/ratio_study/), from its
committed files.

Two steps, so the tables, figures and fits can be regenerated from the repo alone:

    batchmix study collect --grid G --optuna O --zero-shot Z --out DIR   # run folders -> CSVs
    batchmix report --from-results DIR --markdown DIR/README.md                        # CSVs -> README

`collect` writes `results.csv` (one row per run; `source` = grid | optuna | zero_shot), `curves.csv`
(`batchmix.report.studies.results_csv`) and `timing.csv` (the study's stages, from run.sh's timing.log).
`study_block` reads them back and builds the README block: the design and its time, the flattening
check of every ratio, the paper-layout mAP table with MLQA-R columns, Scheffé mixture fits per metric
(`report/studies/mixture_model.py`), the val-chosen mix against pure cross and the paper's alpha = 0.5, the
language-bias table, the paper's claims, convergence per batch type, Optuna against the grid, and
the figures (ternary maps over the fitted surfaces, loss / MSE / val curves).

Protocol: only val numbers choose. The "chosen mix" is the peak of the val map/multi fit; test and
MLQA-R numbers are read at that mix, never used to find it. Each metric's own peak is shown too, as a
description of its surface, not as a choice.
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

from batchmix.mixing.batch_types import batch_type_names
from batchmix.core.errors import BatchmixError, error_line
from batchmix.eval.settings import EVAL_SETTINGS as SETTINGS, HEADLINE_ORDER
from batchmix.report.aggregate import ratio_label
from batchmix.report import plots
from batchmix.report.headlines import BIAS_COLUMNS
from batchmix.report.markdown import figures_section, md_table, replace_block
from batchmix.report.model import ReportModel, cell, ci, ratio_rows, value
from batchmix.report.studies.baselines_report import baseline_section, contrast_section
from batchmix.report.studies.mixture_model import MixtureFit, fit_mixture
from batchmix.report.studies.paper_claims import PAPER_MAP, EvalSetInfo, direction_checks, schedule_name
from batchmix.report.studies.results_csv import CURVES, RESULTS, TIMING, read_results, sweep_tables, write_tables

SOURCE = "source"  # which part of the study a row of results.csv comes from
GRID, OPTUNA, ZERO_SHOT = "grid", "optuna", "zero_shot"
# The flattening criterion of issue #16: val map/multi gains less than FLAT_GAIN over the last
# FLAT_FRACTION of a run's steps (the last val point against the one at or before 80 % of the steps).
FLAT_FRACTION = 0.2
FLAT_GAIN = 0.005
ALPHA = 0.05  # confidence level of every interval and test: 95 %
CHOOSE_ON = "val/map/multi"  # the fit whose peak is the study's chosen mix
SETS = (EvalSetInfo("", "XQuAD-R test", "xquad-r"), EvalSetInfo("mlqa-r/", "MLQA-R (all, zero-shot)", "mlqa-r"))
STEPS_TO_95 = "conv/val/map/multi/step_to_95pct"
STEPS_TO_90 = "conv/val/map/multi/step_to_90pct"
# Steps to 95 % of the final val map/multi, linearly interpolated between val points (from the zero-shot
# val value at step 0 when there is one): the first point at or past 95 % (STEPS_TO_95) moves in whole
# val intervals, too coarse to separate ratios when every run gets there at the same point.
STEPS_TO_95_INTERP = "val/steps_to_95pct_interp"


@dataclass(frozen=True)
class FitMetric:
    column: str
    label: str
    maximize: bool
    digits: int = 3


# The metrics with a fitted surface and a ternary map (issue #16, "The analysis"): of the headline metrics only
# what the paper's claims and the choice rest on (mAP, bias), plus the val figure that chooses and the speed.
FIT_METRICS = (
    *(FitMetric(f"{es.prefix}map/{s}", f"{es.label} map/{s}", True) for es in SETS for s in HEADLINE_ORDER),
    FitMetric("bias/rank_distance", "XQuAD-R test rank distance", False, 1),
    FitMetric("mlqa-r/bias/rank_distance", "MLQA-R rank distance", False, 1),
    FitMetric("mlqa-r/bias/mrc", "MLQA-R MRC", True),
    FitMetric(STEPS_TO_95_INTERP, "steps to 95 % of final val map/multi (interpolated)", False, 1),
    FitMetric(CHOOSE_ON, "val map/multi (chooses)", True),
)


def collect(grid: str | os.PathLike, optuna: str | os.PathLike | None, zero_shot: str | os.PathLike | None,
            out: str | os.PathLike, timing: str | os.PathLike | None = None) -> list[Path]:
    """Write results.csv, curves.csv (and timing.csv) of the study's run folders into `out`."""
    from batchmix.core.run_dir import RunDir

    tables, curves = [], []
    for source, path in ((GRID, grid), (OPTUNA, optuna)):
        found = sweep_tables(path) if path is not None and Path(path).is_dir() else None
        if found is None:
            continue
        table, part = found
        table["run"] = source + "/" + table["run"]
        part["run"] = source + "/" + part["run"]
        tables.append(table.assign(**{SOURCE: source}))
        curves.append(part)
    if not tables or not any((t[SOURCE] == GRID).any() for t in tables):
        raise BatchmixError(f"no complete grid run under {grid}; run experiments/ratio_study/run.sh first")
    if zero_shot is not None and RunDir(zero_shot).metrics_before_file.is_file():
        before = RunDir(zero_shot).read_metrics_before()
        columns = [c for c in tables[0].columns if c in before]
        tables.append(pd.DataFrame([{"run": ZERO_SHOT, SOURCE: ZERO_SHOT, **{c: before[c] for c in columns}}]))
    results = pd.concat(tables, ignore_index=True)
    front = ["run", SOURCE]
    results = results[front + [c for c in results.columns if c not in front]]
    return write_tables(out, results, pd.concat(curves, ignore_index=True), timing)


def shares(runs: pd.DataFrame) -> list[str]:
    return [f"ratio_{t}" for t in batch_type_names() if f"ratio_{t}" in runs.columns]


def val_curves(curves: pd.DataFrame):
    """(run, steps, values) of each run's val map/multi curve, in step order."""
    for run, part in curves[curves["curve"] == CHOOSE_ON].groupby("run", sort=False):
        part = part.sort_values("step")
        yield run, part["step"].to_numpy(float), part["value"].to_numpy(float)


def flattening(curves: pd.DataFrame, runs: pd.DataFrame, fraction: float = FLAT_FRACTION) -> pd.DataFrame:
    """`runs` with `flat/gain`: the val map/multi gain over the last `fraction` of its steps (last point
    minus the point at or before (1 - fraction) x last step; NaN without such a point)."""
    gains = {}
    for run, steps, values in val_curves(curves):
        before = np.flatnonzero(steps <= (1 - fraction) * steps[-1] + 1e-9)
        if len(before):
            gains[run] = float(values[-1] - values[before[-1]])
    return runs.assign(**{"flat/gain": runs["run"].map(gains)})


def steps_to_fraction(steps: np.ndarray, values: np.ndarray, fraction: float = 0.95) -> float:
    """The step where a val curve first reaches `fraction` of its last value, linear between points.
    Hand-written: numpy's interp needs the inverse to be monotone, and a val curve need not be."""
    target = fraction * values[-1]
    hit = int(np.argmax(values >= target))
    if hit == 0:
        return float(steps[0])
    s0, s1, v0, v1 = steps[hit - 1], steps[hit], values[hit - 1], values[hit]
    return float(s0 + (target - v0) / (v1 - v0) * (s1 - s0))


def interpolated_speed(curves: pd.DataFrame, runs: pd.DataFrame, start: float | None = None) -> pd.DataFrame:
    """`runs` with STEPS_TO_95_INTERP from each run's val map/multi curve (`start`: the value at step 0)."""
    speeds = {}
    for run, steps, values in val_curves(curves):
        if start is not None and not math.isnan(start) and steps[0] > 0:
            steps, values = np.r_[0.0, steps], np.r_[start, values]
        speeds[run] = steps_to_fraction(steps, values)
    return runs.assign(**{STEPS_TO_95_INTERP: runs["run"].map(speeds)})


def fits(runs: pd.DataFrame, metrics=FIT_METRICS) -> dict[str, MixtureFit]:
    """The Scheffé quadratic fit of each metric over the grid runs (seeds are replicates)."""
    names = shares(runs)
    return {m.column: fit_mixture(runs, m.column, names) for m in metrics
            if m.column in runs.columns and runs[m.column].notna().sum() > len(names) * (len(names) + 1) // 2
            and runs[m.column].nunique() > 1}  # a constant has no surface (and an undefined R²)


def _point(shares_: list[str], **kw: float) -> np.ndarray:
    return np.array([kw.get(c.removeprefix("ratio_"), 0.0) for c in shares_])


def mix_label(x: np.ndarray) -> str:
    return " : ".join(f"{v:.2f}" for v in x)


def _paper_name(schedule: str) -> str:
    """The paper's name of a ratio row (`schedule_name`), blank for a ratio it has no name for."""
    return "" if schedule[0].isdigit() else schedule


@dataclass
class Study:
    """What each part of the README block reads (the grid runs as a `ReportModel`), each computed once."""

    report: ReportModel
    grid: pd.DataFrame
    types: list[str]
    table: pd.DataFrame
    optuna: pd.DataFrame
    zs: pd.Series | None
    curves: pd.DataFrame
    fitted: dict[str, MixtureFit]

    @classmethod
    def read(cls, results_dir: Path) -> "Study":
        all_runs, curves = read_results(results_dir)
        # each run's `ratio` label, as load_runs gives it (results.csv keeps only the shares)
        all_runs = all_runs.assign(ratio=[ratio_label(*r) for r in all_runs[shares(all_runs)].itertuples(index=False)])
        zs = all_runs[all_runs[SOURCE] == ZERO_SHOT]
        zs = zs.iloc[0] if len(zs) else None
        grid = flattening(curves, all_runs[all_runs[SOURCE] == GRID].copy())
        grid = interpolated_speed(curves, grid, zs.get(CHOOSE_ON) if zs is not None else None)
        report = ReportModel(grid, pd.DataFrame())
        metric_cols = [m.column for m in FIT_METRICS] + [f"{es.prefix}{k}" for es in SETS for k, _, _ in BIAS_COLUMNS]
        conv_cols = [c for c in grid.columns if c.startswith("conv/")]
        table = report.by_ratio(list(dict.fromkeys([*metric_cols, *conv_cols, "flat/gain", "train/steps"])))
        table["schedule"] = [schedule_name(*r) for r in table[shares(grid)].itertuples(index=False)]
        types = [c.removeprefix("ratio_") for c in shares(grid)]
        return cls(report, grid, types, table, all_runs[all_runs[SOURCE] == OPTUNA].copy(), zs, curves, fits(grid))


def study_block(results_dir: str | os.PathLike, figures_dir: Path, figures_link: str = "figures",
                command: str | None = None) -> str:
    """The README block of the study in `results_dir` (results.csv, curves.csv, timing.csv); writes the figures."""
    results_dir = Path(results_dir)
    study = Study.read(results_dir)
    seeds = sorted({int(s) for s in study.grid["seed"].dropna()})
    out = [f"_Generated by `{command or 'batchmix report --from-results <dir> --markdown <README>'}` on "
           f"{time.strftime('%Y-%m-%d')} from `{RESULTS}` ({len(study.grid)} grid runs: {study.table.shape[0]} ratios × seeds "
           f"{', '.join(map(str, seeds))}; {len(study.optuna)} Optuna trials) and `{CURVES}`. Do not edit by hand._", ""]
    out += _timing_section(results_dir / TIMING)
    out += _flattening_section(study, results_dir)
    out += _map_section(study)
    out += _fit_sections(study) if study.fitted else []
    out += contrast_section(study.grid, results_dir)  # the contrasts declared before the answer-aware rerun (R1-R4)
    out += baseline_section(study.grid, study.zs)  # the training-free fixes against training (B1-B3)
    out += _bias_section(study)
    out += ["### The paper's claims, checked on these runs", "",
            "\"Tied\" = the difference is within two standard errors of the difference over seeds.", "",
            md_table(["claim (paper, Table 1)", "evaluation set", "paper", "difference here", "here"], direction_checks(study.table, list(SETS))), ""]
    out += _convergence_section(study)
    if len(study.optuna):
        out += _optuna_section(study)
    out += figures_section(_figures(study), figures_dir, figures_link)
    return "\n".join(out).rstrip() + "\n"


def _timing_section(timing_file: Path) -> list[str]:
    """The design's wall time per stage (run.sh's timing.log, collected into timing.csv)."""
    if not timing_file.is_file():
        return []
    timing = pd.read_csv(timing_file)
    total = int(timing["seconds"].sum())
    return ["### Wall time on this 2-core CPU (run.sh's timing.log)", "",
            md_table(["stage", "seconds", "minutes"], [[r.stage, int(r.seconds), f"{r.seconds / 60:.1f}"] for r in timing.itertuples()]
                     + [["**total**", total, f"**{total / 60:.1f}**"]]), ""]


def _flattening_section(study: Study, results_dir: Path) -> list[str]:
    """Did val map/multi flatten (issue #16's criterion), per ratio and per run."""
    table, grid = study.table, study.grid
    if not table["flat/gain"].notna().any():
        raise BatchmixError(f"no run in {results_dir / CURVES} has a val curve with a point at or before "
                            f"{1 - FLAT_FRACTION:.0%} of its steps; set eval.val_every_n_steps so that one exists")
    steps = sorted({int(s) for s in grid["train/steps"].dropna()}) if "train/steps" in grid else []
    fails = table[table["flat/gain"] >= FLAT_GAIN]
    run_fails = grid[grid["flat/gain"] >= FLAT_GAIN]
    return [f"### Has val map/multi flattened? (gain over the last {FLAT_FRACTION:.0%} of the {'/'.join(map(str, steps))} steps; "
            f"criterion: < {FLAT_GAIN})", "",
            f"{len(table) - len(fails)} of {len(table)} ratios meet it on the mean over seeds, {len(grid) - len(run_fails)} of "
            f"{len(grid)} runs one by one. Largest mean gain: {table['flat/gain'].max():+.4f} "
            f"({table.loc[table['flat/gain'].idxmax(), 'ratio']}); runs that fail: "
            + (", ".join(f"{r['ratio']} seed {int(r['seed'])} ({r['flat/gain']:+.4f})" for _, r in run_fails.iterrows()) or "none")
            + ".", ""]


def _map_section(study: Study) -> list[str]:
    """mAP in the paper's Table 1 layout, every grid ratio, then the paper's XLM-R rows."""
    header = ["batches", f"ratio {' : '.join(study.types)}", "seeds"] + [f"{es.label} {s}" for es in SETS for s in SETTINGS] + ["val multi"]
    keys = [(f"{es.prefix}map/{s}", 3) for es in SETS for s in SETTINGS] + [(CHOOSE_ON, 3)]
    rows = ratio_rows(study.table, lambda r: [_paper_name(r["schedule"]), r["ratio"], int(r["n"])], keys, study.zs,
                      ["none (zero-shot)", "–", "–"])
    rows += [[f"paper, XLM-R, {sched}", "", ""] + [value(v) for key in ("xquad-r", "mlqa-r") for v in values[key]] + [""]
             for (model, sched), values in PAPER_MAP.items() if model == "XLM-R"]
    return ["### mAP on every ratio (the paper's Table 1 layout; mean ± sample std over seeds)", "",
            "The paper's XLM-R rows are its Table 1 (all of XQuAD-R as the pool, a different model and scale): "
            "compare the order, not the level.", "", md_table(header, rows), ""]


def _fit_sections(study: Study) -> list[str]:
    """The Scheffé fit of each metric (coefficients, R², the surface's peak), then the val-chosen mix read on
    every fitted metric against pure cross and the paper's alpha = 0.5."""
    terms = ["β " + "×".join(t.removeprefix("ratio_") for t in term.split("*"))
             for term in next(iter(study.fitted.values())).coefficients()["term"]]
    rows = []
    for m in (m for m in FIT_METRICS if m.column in study.fitted):
        f = study.fitted[m.column]
        best = f.best(maximize=m.maximize)
        pb = f.predict(best, ALPHA).iloc[0]
        rows.append([m.label] + [ci(e, lo, hi, m.digits) for e, lo, hi in f.coefficients(ALPHA)[["estimate", "low", "high"]].itertuples(index=False)]
                    + [f"{f.fit.rsquared:.2f}", mix_label(best), ci(pb["mean"], pb["low"], pb["high"], m.digits)])
    out = ["### Scheffé quadratic mixture model per metric (y = Σ βᵢxᵢ + Σ βᵢⱼxᵢxⱼ, OLS over every grid run, seeds as "
           f"replicates; statsmodels; [{1 - ALPHA:.0%} CI])", "",
           "βᵢ is the fitted value of pure batch type i; βᵢⱼ > 0: mixing i and j beats the straight line between them. "
           "\"peak\": the best fitted mean on a 0.01 grid of the simplex, with its interval — a description of the surface, "
           "not a choice (only the val row chooses).", "",
           md_table(["metric", *terms, "R²", f"peak ({' : '.join(study.types)})", "fitted value at the peak"], rows), ""]
    if CHOOSE_ON not in study.fitted:
        return out
    names = shares(study.grid)
    chosen = study.fitted[CHOOSE_ON].best(maximize=True)
    cross, half = _point(names, cross=1.0), _point(names, mono=0.5, cross=0.5)
    rows = []
    for m in (m for m in FIT_METRICS if m.column in study.fitted):
        f, d = study.fitted[m.column], m.digits
        p = f.predict(chosen, ALPHA).iloc[0]
        cells = [m.label, ci(p["mean"], p["low"], p["high"], d)]
        for other in (cross, half):
            c = f.compare(chosen, other)
            better = (c["diff"] > 0) == m.maximize
            verdict = ("better" if better else "worse") if c["p"] < ALPHA else "within noise"
            cells.append(f"{c['diff']:+.{d}f} ± {c['se']:.{d}f}, p = {c['p']:.3f}: {verdict}")
        rows.append(cells)
    return out + [f"### The mix chosen on val ({mix_label(chosen)}, the peak of the val map/multi fit) against pure cross-lingual "
                  "and the paper's hybrid α = 0.5", "",
                  "Differences of fitted means (t-test of the contrast; \"within noise\" = p ≥ 0.05). The test and MLQA-R "
                  "values are read at the val-chosen mix, never used to choose it. The chosen mix is the peak of a fit to "
                  "the same runs, so its advantage on the val row itself is optimistic."
                  + (" The chosen mix is pure cross-lingual itself, so its first column is zero by construction."
                     if np.allclose(chosen, cross) else ""), "",
                  md_table(["metric", "fitted at the chosen mix", "minus pure cross", "minus α = 0.5 (0.5 : 0.5 : 0)"], rows), ""]


def _bias_section(study: Study) -> list[str]:
    header = ["batches", "ratio"] + [f"{es.label} {name}" for es in SETS for _, name, _ in BIAS_COLUMNS]
    rows = ratio_rows(study.table, lambda r: [_paper_name(r["schedule"]), r["ratio"]],
                      [(f"{es.prefix}{k}", d) for es in SETS for k, _, d in BIAS_COLUMNS], study.zs, ["none (zero-shot)", "–"])
    return ["### Language bias (rank distance: worst minus best rank of a question's answers across languages, lower = "
            "less biased; own-language first: share of questions whose same-language answer ranks first; MRC: mean "
            "Spearman correlation between the rankings of the pool by a question's translations, Yang, Jiang and Baldwin "
            "2025, arXiv 2509.06195, higher = less biased)", "", md_table(header, rows), ""]


def _convergence_section(study: Study) -> list[str]:
    types = study.types
    header = ["ratio"] + [f"{c} · {t}" for c in ("loss final", "loss AUC", "MSE final", "MSE AUC") for t in types] + \
             ["val steps to 90 %", "val steps to 95 %", "val steps to 95 %, interpolated"]
    keys = [(f"conv/{t}/{c}", 3) for c in ("loss/final", "loss/auc", "mse/final", "mse/auc") for t in types]
    keys += [(STEPS_TO_90, 0), (STEPS_TO_95, 0), (STEPS_TO_95_INTERP, 1)]
    return ["### Convergence per batch type (final: the smoothed curve's last value; AUC: the mean height of the curve "
            "over the run; MSE: mean squared error between a query's and its positive's normalised embeddings; "
            "val steps: first val point within 10 % / 5 % of the run's final val map/multi; interpolated: linear between "
            "val points, from the zero-shot value at step 0)", "", md_table(header, ratio_rows(study.table, lambda r: [r["ratio"]], keys)), ""]


def _optuna_section(study: Study) -> list[str]:
    """Optuna's best trial against the grid's best ratio, within the grid's seed noise or not."""
    table, optuna = study.table, study.optuna
    grid_best = table.loc[table[CHOOSE_ON].idxmax()]
    trial_best = optuna.loc[optuna[CHOOSE_ON].idxmax()]
    rows = []
    for column, label in ((CHOOSE_ON, "val map/multi (chooses)"), *((f"{es.prefix}map/multi", f"{es.label} map/multi") for es in SETS)):
        diff = trial_best[column] - grid_best[column]
        noise = 2 * grid_best.get(f"{column}/std", math.nan)
        verdict = "within noise" if abs(diff) <= noise else ("better" if diff > 0 else "worse")
        rows.append([label, cell(grid_best, column), value(trial_best[column]), f"{diff:+.3f}", f"{noise:.3f}", verdict])
    trials = optuna.sort_values(CHOOSE_ON, ascending=False)
    return [f"### Optuna TPE over the same simplex ({len(optuna)} trials, seed 0, val objective) against the grid", "",
            f"Grid best on val: {grid_best['ratio']} ({int(grid_best['n'])} seeds); Optuna's best trial: "
            f"{trial_best['ratio']} (`{trial_best['run']}`). \"Within noise\" = the difference is at most twice the "
            "seed-to-seed standard deviation of the grid's best ratio.", "",
            md_table(["metric", "grid best (mean ± std)", "Optuna best trial", "difference", "noise (2 sd)", "verdict"], rows), "",
            md_table(["trial", "ratio", "val map/multi", "XQuAD-R test map/multi", "MLQA-R map/multi"],
                     [[r["run"], r["ratio"], value(r[CHOOSE_ON]), value(r["map/multi"]), value(r.get("mlqa-r/map/multi"))]
                      for _, r in trials.iterrows()]), ""]


def _figures(study: Study) -> list[tuple[str, str, object]]:
    """(name, caption, Figure): the fitted surfaces, then the training and val curves of each grid ratio (mean
    over seeds, band ± 1 sample std, coloured by ratio with a triangle key)."""
    panels = [(m, study.fitted[m.column]) for m in FIT_METRICS if m.column in study.fitted]
    figs = [("ternary_fits", "Every metric over the simplex: the Scheffé fit's surface, the ratios' seed means as points "
             "(same colour scale: a point that stands out from its background is off the fit)",
             plots.plot_ternary_fits(study.grid, panels))] if panels else []
    per_ratio = study.grid.groupby("ratio")["run"].nunique()
    seeds = f"{per_ratio.min()}" if per_ratio.min() == per_ratio.max() else f"{per_ratio.min()}–{per_ratio.max()}"
    zs = study.zs is not None and pd.notna(study.zs.get(CHOOSE_ON))
    key = (f"Line colour = the ratio, shown as a point on the triangle beside the panels (corners: {plots.ratio_key_words(study.grid)}; "
           "a mix of its shares, apart from the batch types' red, blue and green)")
    return figs + [("train_curves", "Training loss (top) and MSE (bottom) per batch type: one line per ratio, the mean over its "
                    f"{seeds} seeds of each run's binned curve (seeds interpolated onto common steps), band ± 1 sample std over "
                    f"seeds; a ratio without batches of a type has no line in that type's panels. {key}",
                    plots.plot_study_curves(study.curves, study.grid, study.types)),
                   ("val_curves", "Val mAP (multi, mono, cross settings) at every val point: one line per ratio, the mean over its "
                    f"{seeds} seeds, band ± 1 sample std over seeds"
                    + ("; every line starts at step 0 from the zero-shot model's value (black star)" if zs else "") + f". {key}",
                    plots.plot_study_val_curves(study.curves, study.grid, zero_shot=study.zs))]


def write_study_readme(results_dir: str | os.PathLike, readme: str | os.PathLike, command: str | None = None) -> Path:
    """Regenerate the marked block of `readme` from the CSVs in `results_dir` (prose outside the markers is kept)."""
    readme = Path(readme)
    return replace_block(readme, study_block(results_dir, readme.parent / "figures", "figures", command))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchmix study", description="collect a ratio study's CSVs")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run folders -> results.csv, curves.csv, timing.csv")
    c.add_argument("--grid", required=True)
    c.add_argument("--optuna", default=None)
    c.add_argument("--zero-shot", default=None)
    c.add_argument("--timing", default=None)
    c.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        for path in collect(args.grid, args.optuna, args.zero_shot, args.out, args.timing):
            print(path)
    except BatchmixError as err:
        return error_line(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
