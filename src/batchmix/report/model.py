"""The report model: a sweep's tables and figures, computed once and rendered twice.

`ReportModel` loads every run of a sweep (`aggregate.load_runs` / `load_histories`) and owns what
both views show: the per-ratio summary (mean ± std over seeds, one formatter), the convergence
tables, the figures with their captions, and the prose that explains them. `report/sweep_report.py`
renders it to report.html, `report/study_markdown.py` to a study README; neither picks columns, formats
numbers or describes convergence on its own, so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from batchmix.batch_types import batch_type_names
from batchmix.convergence import ALL, DEFAULT_MIN_SETTLED, DEFAULT_TOLERANCE, DEFAULT_WINDOW, figure_name
from batchmix.eval.settings import HEADLINE_ORDER
from batchmix.report import plots
from batchmix.report.aggregate import by_ratio, load_histories, load_runs, sweep_shape

# The headline metrics of a ratio sweep, in the order the report's summary tables show them.
REPORT_HEADLINE = (*(f"map/{s}" for s in HEADLINE_ORDER), "bias/rank_distance", "recall@10/multi")
# What a figure shows, once for every view (keys: the figure's file name without `.png`).
CAPTIONS = {
    "curves_loss": "Training loss by batch type, one line per ratio (mean ± std over seeds)",
    "curves_mse": "In-batch similarity MSE by batch type, one line per ratio (mean ± std over seeds)",
    "final_vs_ratio": "Final mAP and rank distance per ratio",
    "ternary": "Final metrics on the ratio simplex",
}


def fmt_mean_std(mean: float | None, std: float | None, n: int, digits: int = 3) -> str:
    """`mean ± std` for a ratio with n > 1 seeds, `mean` alone for one seed, '–' where it is missing.

    A count every seed shares (steps, std 0 at 0 digits) prints as one integer."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    std = math.nan if std is None else float(std)
    if n > 1 and std == 0 and digits == 0:
        return f"{mean:.0f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 and not math.isnan(std) else f"{mean:.{digits}f}"


def cell(row: pd.Series, column: str, digits: int = 3) -> str:
    """One `by_ratio` row's `column` as `fmt_mean_std` text; '–' where the runs lack the column."""
    return fmt_mean_std(float(row.get(column, math.nan)), float(row.get(f"{column}/std", math.nan)), int(row["n"]), digits)


@dataclass(frozen=True)
class ReportFigure:
    name: str      # file name without .png
    caption: str
    figure: Figure


class ReportModel:
    """Every run of a sweep (or of several run dirs) and what the report shows of them."""

    def __init__(self, runs: pd.DataFrame, histories: pd.DataFrame, *, window: int = DEFAULT_WINDOW,
                 tolerance: float = DEFAULT_TOLERANCE) -> None:
        self.runs, self.histories = runs, histories
        self.window, self.tolerance = window, tolerance
        self._figures: dict[str, ReportFigure] = {}

    @classmethod
    def from_dirs(cls, dirs: list[Path], *, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> "ReportModel":
        runs = [load_runs(d, window, tolerance) for d in dirs]
        histories = [load_histories(d) for d in dirs]
        return cls(pd.concat(runs, ignore_index=True) if runs else pd.DataFrame(),
                   pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(), window=window, tolerance=tolerance)

    # ------------------------------------------------------------------ the runs
    @cached_property
    def complete(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "complete"] if "status" in self.runs.columns else self.runs

    @cached_property
    def shape(self) -> str:
        return sweep_shape(self.runs) if not self.runs.empty else "none"

    @property
    def steps_key(self) -> str:
        """The convergence figure `steps_to_<p>pct` for this report's tolerance."""
        return figure_name(self.tolerance)

    def by_ratio(self, columns: list[str]) -> pd.DataFrame:
        """Numbers per ratio of the complete runs (`aggregate.by_ratio`: `n`, mean, `<col>/std`)."""
        return by_ratio(self.complete, columns)

    # ------------------------------------------------------------------ tables
    def summary(self, columns: list[str], digits: dict[str, int] | None = None, headers: dict[str, str] | None = None,
                sort_by: str | None = None, runs: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per ratio: `fmt_mean_std` of each column, as display strings (default: the complete runs)."""
        columns = [c for c in columns if c in (self.complete if runs is None else runs).columns]
        table = by_ratio(self.complete if runs is None else runs, columns)
        if sort_by in table.columns:
            table = table.sort_values(sort_by, ascending=False, na_position="last")
        out = pd.DataFrame({f"ratio {'/'.join(batch_type_names())}": table["ratio"], "runs": table["n"].astype(int)})
        for col in columns:
            out[(headers or {}).get(col, col)] = [cell(row, col, (digits or {}).get(col, 3)) for _, row in table.iterrows()]
        return out

    def results_table(self) -> pd.DataFrame:
        """The headline metrics and whole-run convergence per ratio, best map/multi first."""
        steps = f"conv/all/loss/{self.steps_key}"
        headers = {steps: f"loss: steps to {100 * self.tolerance:g} %", "conv/all/loss/auc": "loss: AUC / step",
                   "conv/all/mse/final": "MSE: final"}
        return self.summary([*REPORT_HEADLINE, steps, "conv/all/loss/auc", "conv/all/mse/final"], digits={steps: 0},
                            headers=headers, sort_by="map/multi")

    def convergence_tables(self) -> list[tuple[str, pd.DataFrame]]:
        """Per convergence figure (steps to settle, AUC, final): one column per curve and batch type."""
        tables = []
        for figure, label, digits in ((self.steps_key, f"Steps to within {100 * self.tolerance:g} % of the final value", 0),
                                      ("auc", "Area under the curve per step", 3), ("final", "Final smoothed value", 3)):
            keys = {f"conv/{btype}/{curve}/{figure}": f"{curve} · {btype}" for curve in ("loss", "mse") for btype in (*batch_type_names(), ALL)}
            tables.append((label, self.summary(list(keys), {k: digits for k in keys}, keys, runs=self.runs)))
        return tables

    def convergence_note(self) -> str:
        """What the convergence figures mean (definitions: batchmix/convergence.py)."""
        p = f"{100 * self.tolerance:g} %"
        return (f"steps to {p}: the first global step from which the smoothed curve stays within {p} of its final "
                f"smoothed value ('–': it did not stay there for the last {100 * DEFAULT_MIN_SETTLED:g} % of the run, or "
                "the ratio has no batch of that type). AUC/step: trapezoid area under the raw curve divided by its step "
                "span (its mean height; lower = lower loss over the whole run). final: last smoothed value. "
                "Definitions: batchmix/convergence.py.")

    def curves_note(self) -> str:
        return (f"Per batch type, smoothed with a bias-corrected EMA (span {self.window} observations of that type) on the "
                "global-step axis; one line per ratio (mean over seeds, band ±1 std). 'all batches' is every step "
                "regardless of type.")

    # ------------------------------------------------------------------ figures (each drawn once)
    def _figure(self, name: str, caption: str, draw) -> ReportFigure:
        if name not in self._figures:
            self._figures[name] = ReportFigure(name, caption, draw())
        return self._figures[name]

    def curves_figure(self, curve: str) -> ReportFigure:
        return self._figure(f"curves_{curve}", CAPTIONS[f"curves_{curve}"], lambda: plots.plot_curves(self.histories, curve, self.window))

    def curve_figures(self) -> list[ReportFigure]:
        """The figures over training steps. Both views show every figure of this list (report.html in its
        curves section, the study README under Figures): a new curve plot is one entry here."""
        return [self.curves_figure("loss"), self.curves_figure("mse")]

    def final_vs_ratio_figure(self, prefix: str = "", set_label: str | None = None, name: str = "final_vs_ratio") -> ReportFigure:
        """Final mAP per setting and rank distance against the ratio; `prefix` selects an evaluation set."""
        caption = CAPTIONS["final_vs_ratio"] + (f", {set_label}" if set_label else "")
        return self._figure(name, caption, lambda: plots.plot_final_vs_ratio(
            self.complete, metric=f"{prefix}map", bias=f"{prefix}bias/rank_distance"))

    def ternary_figure(self, values: tuple[str, ...] = ("map/multi", "bias/rank_distance")) -> ReportFigure:
        shown = [v for v in values if v in self.complete.columns]
        return self._figure("ternary", CAPTIONS["ternary"], lambda: plots.plot_ternary(self.complete, shown))
