"""`build_report(source)`: a sweep dir, a run dir or an Optuna study in, `report/` out.

    <out>/report.html     self-contained page (PNGs embedded)
    <out>/runs.csv        one row per run (`aggregate.load_runs`), also as runs.parquet
    <out>/trials.csv      the normalised Optuna trials, when there is a study
    <out>/*.png           every figure of the page, for reuse

Default `<out>`: `<source>/report` for a directory, `./optuna_report_<study>` for a storage URL.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import pandas as pd

from batchmix.eval.convergence import DEFAULT_TOLERANCE, DEFAULT_WINDOW
from batchmix.core.errors import BatchmixError
from batchmix.core.io import atomic_write_text
from batchmix.eval.settings import EVAL_SETTINGS
from batchmix.report.aggregate import ratio_columns, triangle_columns, used_ratio_columns
from batchmix.report.html import Section, render_html
from batchmix.report.headlines import REPORT_HEADLINE, RUNS_TABLE_HEADLINE
from batchmix.report.model import VAL_TABLE_CAPTION, ReportFigure, ReportModel
from batchmix.report.optuna_trials import StudyTable, load_study_files, load_study_storage
from batchmix.report import plots

log = logging.getLogger("batchmix")
SHAPE_WORDS = {"none": "no ratio information", "point": "a single ratio", "line": "ratios on one line of the simplex",
               "simplex": "ratios spread over the simplex"}


def _runs_from_study(study: StudyTable) -> pd.DataFrame:
    """Ratio points of a study without run dirs: objectives as metric columns."""
    done = study.completed()
    if not set(ratio_columns()) <= set(done.columns):
        return pd.DataFrame()
    frame = done[["number", *ratio_columns(), "ratio", *study.objectives]].rename(columns={"number": "run"})
    return frame.assign(status="complete", seed=None)


def _study_run_dirs(study: StudyTable) -> list[Path]:
    col = next((c for c in ("user_attrs_run_dir", "user_attrs_output_dir") if c in study.trials.columns), None)
    if col is None:
        return []
    return [Path(p) for p in study.trials[col].dropna().unique() if Path(p).is_dir()]


def build_report(source: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, study: str | None = None,
                 window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE, title: str | None = None) -> Path:
    """Aggregate, plot and write the report; returns the path of report.html."""
    start = time.perf_counter()
    study_table: StudyTable | None
    if "://" in str(source):  # a storage URL
        study_table = load_study_storage(str(source), study)
        model = ReportModel.from_dirs(_study_run_dirs(study_table), window=window, tolerance=tolerance)
        out = Path(out_dir) if out_dir else Path.cwd() / f"optuna_report_{study_table.name}"
        where = f"{source} · study {study_table.name}"
    else:
        root = Path(source)
        if not root.is_dir():
            raise BatchmixError(f"{root} does not exist or is not a directory; pass a run dir, a multirun dir, or an Optuna storage URL (sqlite:///optuna.db --study NAME)")
        model = ReportModel.from_dirs([root], window=window, tolerance=tolerance)
        study_table = load_study_files(root)
        out = Path(out_dir) if out_dir else root / "report"
        where = str(root.resolve())
    if model.runs.empty and study_table is None:
        raise BatchmixError(f"no batchmix run under {source} (a run dir holds config.yaml + metrics.json or history.csv)")
    if model.runs.empty and study_table is not None:
        model = ReportModel(_runs_from_study(study_table), model.histories, val_histories=model.val_histories,
                            objectives=study_table.objectives, window=window, tolerance=tolerance)
    runs, complete = model.runs, model.complete
    out.mkdir(parents=True, exist_ok=True)

    # Tables on disk first: they are the data; the page is a view of them.
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False))
    _write_parquet(runs, out / "runs.parquet")
    if study_table is not None:
        atomic_write_text(out / "trials.csv", study_table.trials.to_csv(index=False))

    sections: list[Section] = []
    n_ratios = runs["ratio"].nunique() if "ratio" in runs.columns else 0
    seeds = sorted({int(s) for s in runs["seed"].dropna()}) if "seed" in runs.columns else []
    overview = [
        f"{len(runs)} runs ({len(complete)} complete), {n_ratios} distinct ratios"
        + (f", seeds {', '.join(map(str, seeds))}" if seeds else "")
        + f"; sweep shape: {model.shape} ({SHAPE_WORDS[model.shape]}).",
        model.selection_note(),
    ]
    sections.append(Section("Overview", overview, anchor="overview"))

    def add(section: Section, figure: ReportFigure) -> None:
        png = plots.figure_png(figure.figure)
        (out / f"{figure.name}.png").write_bytes(png)
        section.images.append((figure.caption, png))

    if not complete.empty and any(c in complete.columns for c in REPORT_HEADLINE):
        results = Section("Results by ratio", [
            "Per ratio (mean ± sample std over seeds where a ratio has several), ordered by the final val/map/multi, the "
            "selection objective; the other metrics are the test split's, reported and never used to choose. "
            "Convergence columns use every training step (batch type 'all'); per-type figures are in the convergence section.",
        ], tables=[("Final metrics", model.results_table())], anchor="results")
        if any(f"map/{s}" in complete.columns for s in EVAL_SETTINGS):
            add(results, model.final_vs_ratio_figure())
        sections.append(results)
        if model.shape == "simplex" and triangle_columns(complete) is None:
            results.paragraphs.append(
                f"The ratios mix {len(used_ratio_columns(complete))} batch types, not three, so there is no triangle "
                "map; the per-ratio chart above shows every ratio.")
        elif model.shape == "simplex":
            simplex = Section("Ratio simplex", [
                "Each point is a swept ratio (mean over seeds, value printed); the shaded field interpolates linearly "
                "between the points (it is a guide for the eye, not a measurement). Colours: yellow = better.",
            ], anchor="simplex")
            add(simplex, model.ternary_figure())
            sections.append(simplex)

    if not model.histories.empty:
        # the validation curve is one of `curve_figures` (beside loss and MSE); its table heads the convergence section
        curves = Section("Loss, MSE and validation curves", [model.curves_note()] + ([] if model.has_val_curve else [model.val_note()]),
                         anchor="curves")
        for figure in model.curve_figures():
            add(curves, figure)
        sections.append(curves)
        val = [(VAL_TABLE_CAPTION, model.val_table())] if model.has_val_curve else []
        sections.append(Section("Convergence by ratio", [model.convergence_note()] + ([model.val_note()] if val else []),
                                tables=val + model.convergence_tables(), anchor="convergence"))

    if study_table is not None:
        optuna_section = Section("Optuna study", [
            f"Study {study_table.name or '(unnamed)'}: {len(study_table.trials)} trials, objectives "
            + ", ".join(f"{o} ({d})" for o, d in zip(study_table.objectives, study_table.directions)) + ".",
        ], anchor="optuna")
        add(optuna_section, ReportFigure("optuna_history", "Optuna optimisation history", plots.plot_optuna_history(study_table)))
        if study_table.multi_objective:
            add(optuna_section, ReportFigure("pareto_front", "Pareto front", plots.plot_pareto_front(study_table)))
            front = study_table.trials[study_table.trials["number"].isin(study_table.pareto)]
            show = [c for c in ("number", "ratio", *study_table.objectives) if c in front.columns]
            optuna_section.tables.append(("Pareto-optimal trials", front[show].round(4)))
        sections.append(optuna_section)

    if "run" in runs.columns and len(runs):
        sections.append(_runs_section(runs, model))

    page = render_html(title or "batchmix sweep report", where, sections,
                       links=[("runs.csv", "runs.csv"), ("runs.parquet", "runs.parquet")])
    path = atomic_write_text(out / "report.html", page)
    log.info("report with %d runs built in %.1fs: %s", len(runs), time.perf_counter() - start, path)
    return path


def _runs_section(runs: pd.DataFrame, model: ReportModel) -> Section:
    """Every run, one row each: the headline metrics, its convergence and the config values that vary."""
    steps = f"conv/all/loss/{model.steps_key}"
    show = [c for c in ("run", "ratio", "seed", "status", *RUNS_TABLE_HEADLINE, steps, "train/steps") if c in runs.columns]
    show += [c for c in runs.columns if c.startswith("cfg/")][:6]
    per_run = runs[show].copy()
    for c in per_run.columns:
        values = pd.to_numeric(per_run[c], errors="coerce") if c in ("seed", "train/steps") or c.startswith("conv/") else per_run[c]
        if pd.api.types.is_float_dtype(values) and values.dropna().apply(float.is_integer).all():
            per_run[c] = values.map(lambda v: "–" if pd.isna(v) else str(int(v)))  # step counts and seeds as integers
        elif pd.api.types.is_float_dtype(values):
            per_run[c] = values.round(4)
    per_run = per_run.rename(columns={steps: f"loss: steps to {100 * model.tolerance:g} %"})
    return Section("Runs", ["Every run found; the full table (all metrics, convergence figures, varying config "
                            "values) is in runs.csv / runs.parquet next to this page."], tables=[("Runs", per_run)], anchor="runs")


def _write_parquet(runs: pd.DataFrame, path: Path) -> None:
    """Parquet needs one type per column: config columns with mixed values are stored as text."""
    frame = runs.copy()
    for col in frame.columns:
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col].dropna()}
            if len(kinds) > 1 or (kinds and not kinds <= {str}):
                frame[col] = frame[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
