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

from batchmix.batch_types import batch_type_names
from batchmix.convergence import ALL, DEFAULT_MIN_SETTLED, DEFAULT_TOLERANCE, DEFAULT_WINDOW, figure_name
from batchmix.errors import BatchmixError
from batchmix.eval.settings import EVAL_SETTINGS
from batchmix.io import atomic_write_text
from batchmix.report.aggregate import (by_ratio, load_histories, load_runs, ratio_columns, sweep_shape, triangle_columns,
                                       used_ratio_columns)
from batchmix.report.html import Section, render_html
from batchmix.report.optuna_trials import StudyTable, load_study_files, load_study_storage
from batchmix.report import plots

log = logging.getLogger("batchmix")

HEADLINE = ("map/multi", "map/mono", "map/cross", "bias/rank_distance", "recall@10/multi")


def is_storage_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def _fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{digits}f}"
    return text


def summary_table(runs: pd.DataFrame, columns: list[str], digits: dict[str, int] | None = None,
                  headers: dict[str, str] | None = None, sort_by: str | None = None) -> pd.DataFrame:
    """Per ratio: `mean ± std` (std only with several seeds) of each column, as display strings."""
    columns = [c for c in columns if c in runs.columns]
    table = by_ratio(runs, columns)
    if sort_by in table.columns:
        table = table.sort_values(sort_by, ascending=False, na_position="last")
    out = pd.DataFrame({f"ratio {'/'.join(batch_type_names())}": table["ratio"], "runs": table["n"].astype(int)})
    for col in columns:
        d = (digits or {}).get(col, 3)
        out[(headers or {}).get(col, col)] = [_fmt(m, s if n > 1 else None, d) for m, s, n in zip(table[col], table[f"{col}/std"], table["n"])]
    return out


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
    if is_storage_url(source):
        study_table = load_study_storage(str(source), study)
        run_dirs = _study_run_dirs(study_table)
        runs = pd.concat([load_runs(d, window, tolerance) for d in run_dirs], ignore_index=True) if run_dirs else pd.DataFrame()
        histories = pd.concat([load_histories(d) for d in run_dirs], ignore_index=True) if run_dirs else pd.DataFrame()
        out = Path(out_dir) if out_dir else Path.cwd() / f"optuna_report_{study_table.name}"
        where = f"{source} · study {study_table.name}"
    else:
        root = Path(source)
        if not root.is_dir():
            raise BatchmixError(f"{root} does not exist or is not a directory; pass a run dir, a multirun dir, or an Optuna storage URL (sqlite:///optuna.db --study NAME)")
        runs = load_runs(root, window, tolerance)
        histories = load_histories(root)
        study_table = load_study_files(root)
        out = Path(out_dir) if out_dir else root / "report"
        where = str(root.resolve())
    if runs.empty and study_table is None:
        raise BatchmixError(f"no batchmix run under {source} (a run dir holds config.yaml + metrics.json or history.csv)")
    if runs.empty and study_table is not None:
        runs = _runs_from_study(study_table)
    out.mkdir(parents=True, exist_ok=True)

    # Tables on disk first: they are the data; the page is a view of them.
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False))
    _write_parquet(runs, out / "runs.parquet")
    if study_table is not None:
        atomic_write_text(out / "trials.csv", study_table.trials.to_csv(index=False))

    sections: list[Section] = []
    complete = runs[runs["status"] == "complete"] if "status" in runs.columns else runs
    shape = sweep_shape(runs) if not runs.empty else "none"
    n_ratios = runs["ratio"].nunique() if "ratio" in runs.columns else 0
    seeds = sorted({int(s) for s in runs["seed"].dropna()}) if "seed" in runs.columns else []
    overview = [
        f"{len(runs)} runs ({len(complete)} complete), {n_ratios} distinct ratios"
        + (f", seeds {', '.join(map(str, seeds))}" if seeds else "")
        + f"; sweep shape: {shape} ({_shape_words(shape)}).",
    ]
    sections.append(Section("Overview", overview, anchor="overview"))

    def figure(section: Section, name: str, fig) -> None:
        png = plots.figure_png(fig)
        (out / f"{name}.png").write_bytes(png)
        section.images.append((name, png))

    steps_key = figure_name(tolerance)
    if not complete.empty and any(c in complete.columns for c in HEADLINE):
        headers = {f"conv/all/loss/{steps_key}": f"loss: steps to {100 * tolerance:g} %", "conv/all/loss/auc": "loss: AUC / step",
                   "conv/all/mse/final": "MSE: final"}
        cols = [*HEADLINE, f"conv/all/loss/{steps_key}", "conv/all/loss/auc", "conv/all/mse/final"]
        table = summary_table(complete, cols, digits={f"conv/all/loss/{steps_key}": 0}, headers=headers, sort_by="map/multi")
        results = Section("Results by ratio", [
            "Held-out metrics per ratio (mean ± sample std over seeds where a ratio has several), best map/multi first. "
            "Convergence columns use every training step (batch type 'all'); per-type figures are in the convergence section.",
        ], tables=[("Final metrics", table)], anchor="results")
        map_cols = [f"map/{s}" for s in EVAL_SETTINGS if f"map/{s}" in complete.columns]
        if map_cols:
            figure(results, "final_vs_ratio", plots.plot_final_vs_ratio(complete))
        sections.append(results)
        if shape == "simplex" and triangle_columns(complete) is None:
            results.paragraphs.append(
                f"The ratios mix {len(used_ratio_columns(complete))} batch types, not three, so there is no triangle "
                "map; the per-ratio chart above shows every ratio.")
        elif shape == "simplex":
            values = [v for v in ("map/multi", "bias/rank_distance") if v in complete.columns]
            simplex = Section("Ratio simplex", [
                "Each point is a swept ratio (mean over seeds, value printed); the shaded field interpolates linearly "
                "between the points (it is a guide for the eye, not a measurement). Colours: yellow = better.",
            ], anchor="simplex")
            figure(simplex, "ternary", plots.plot_ternary(complete, values))
            sections.append(simplex)

    if not histories.empty:
        curves = Section("Loss and MSE curves", [
            f"Per batch type, smoothed with a bias-corrected EMA (span {window} observations of that type) on the global-step "
            "axis; one line per ratio (mean over seeds, band ±1 std). 'all batches' is every step regardless of type.",
        ], anchor="curves")
        figure(curves, "curves_mse", plots.plot_curves(histories, "mse", window))
        figure(curves, "curves_loss", plots.plot_curves(histories, "loss", window))
        sections.append(curves)
        conv_tables = []
        for fig_name, label, d in ((steps_key, f"Steps to within {100 * tolerance:g} % of the final value", 0),
                                   ("auc", "Area under the curve per step", 3), ("final", "Final smoothed value", 3)):
            cols, headers = [], {}
            for curve in ("loss", "mse"):
                for btype in (*batch_type_names(), ALL):
                    key = f"conv/{btype}/{curve}/{fig_name}"
                    cols.append(key)
                    headers[key] = f"{curve} · {btype}"
            conv_tables.append((label, summary_table(runs, cols, {c: d for c in cols}, headers)))
        sections.append(Section("Convergence by ratio", [
            f"steps to {100 * tolerance:g} %: the first global step from which the smoothed curve stays within "
            f"{100 * tolerance:g} % of its final smoothed value ('–': it did not stay there for the last "
            f"{100 * DEFAULT_MIN_SETTLED:g} % of the run, or the ratio has no batch of that type). AUC/step: trapezoid area "
            "under the raw curve divided by its step span (its mean height; lower = lower loss over the whole run). "
            "final: last smoothed value. Definitions: batchmix/convergence.py.",
        ], tables=conv_tables, anchor="convergence"))

    if study_table is not None:
        optuna_section = Section("Optuna study", [
            f"Study {study_table.name or '(unnamed)'}: {len(study_table.trials)} trials, objectives "
            + ", ".join(f"{o} ({d})" for o, d in zip(study_table.objectives, study_table.directions)) + ".",
        ], anchor="optuna")
        figure(optuna_section, "optuna_history", plots.plot_optuna_history(study_table))
        if study_table.multi_objective:
            figure(optuna_section, "pareto_front", plots.plot_pareto_front(study_table))
            front = study_table.trials[study_table.trials["number"].isin(study_table.pareto)]
            show = [c for c in ("number", "ratio", *study_table.objectives) if c in front.columns]
            optuna_section.tables.append(("Pareto-optimal trials", front[show].round(4)))
        sections.append(optuna_section)

    if "run" in runs.columns and len(runs):
        show = [c for c in ("run", "ratio", "seed", "status", "map/multi", "map/mono", "map/cross", "bias/rank_distance",
                            f"conv/all/loss/{steps_key}", "train/steps") if c in runs.columns]
        show += [c for c in runs.columns if c.startswith("cfg/")][:6]
        per_run = runs[show].copy()
        for c in per_run.columns:
            values = pd.to_numeric(per_run[c], errors="coerce") if c in ("seed", "train/steps") or c.startswith("conv/") else per_run[c]
            if pd.api.types.is_float_dtype(values) and values.dropna().apply(float.is_integer).all():
                per_run[c] = values.map(lambda v: "–" if pd.isna(v) else str(int(v)))  # step counts and seeds as integers
            elif pd.api.types.is_float_dtype(values):
                per_run[c] = values.round(4)
        per_run = per_run.rename(columns={f"conv/all/loss/{steps_key}": f"loss: steps to {100 * tolerance:g} %"})
        sections.append(Section("Runs", ["Every run found; the full table (all metrics, convergence figures, varying config "
                                         "values) is in runs.csv / runs.parquet next to this page."],
                                tables=[("Runs", per_run)], anchor="runs"))

    page = render_html(title or "batchmix sweep report", where, sections,
                       links=[("runs.csv", "runs.csv"), ("runs.parquet", "runs.parquet")])
    path = atomic_write_text(out / "report.html", page)
    log.info("report with %d runs built in %.1fs: %s", len(runs), time.perf_counter() - start, path)
    return path


def _shape_words(shape: str) -> str:
    return {"none": "no ratio information", "point": "a single ratio", "line": "ratios on one line of the simplex",
            "simplex": "ratios spread over the simplex"}[shape]


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
