"""The report model: a sweep's tables and figures, computed once and rendered three times.

`ReportModel` holds the runs of a sweep (`from_dirs`: `aggregate.load_runs` / `load_histories` /
`load_val_histories`; or a ratio study's results.csv rows) and owns what the views show: the per-ratio
numbers (mean ± std over seeds), the convergence and validation-curve tables, the figures with their
captions, the selection split, and the prose that explains them. `report/sweep_report.py` renders it to
report.html, `report/markdown.py` to a sweep's README block, `report/studies/ratio_study.py` to the
ratio study's; every number of every view is written by `fmt_mean_std` (through `cell`, `value`,
`ratio_rows`), so no view formats a mean, a spread or a missing value its own way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from batchmix.core.errors import BatchmixError
from batchmix.mixing.batch_types import batch_type_names
from batchmix.eval.convergence import (ALL, DEFAULT_MIN_SETTLED, DEFAULT_TOLERANCE, DEFAULT_WINDOW, VAL_FRACTIONS, VAL_METRIC,
                                  figure_name, fraction_name)
from batchmix.report import plots
from batchmix.report.aggregate import by_ratio, load_histories, load_runs, load_val_histories, sweep_shape
from batchmix.report.selection_split import run_objectives, selection_note
from batchmix.report.headlines import REPORT_HEADLINE

# What a figure shows, once for every view (keys: the figure's file name without `.png`).
CAPTIONS = {
    "curves_loss": "Training loss by batch type, one line per ratio (mean ± std over seeds), coloured by ratio as its key shows",
    "curves_mse": "In-batch similarity MSE by batch type, one line per ratio (mean ± std over seeds), coloured by ratio as its key shows",
    "curves_val": f"Validation {VAL_METRIC} against the training step, one line per ratio (mean ± std over seeds), coloured by "
                  "ratio as its key shows",
    "final_vs_ratio": "Final mAP and rank distance per ratio",
    "ternary": "Final metrics on the ratio simplex",
}
VAL_TABLE_CAPTION = (f"Validation curve ({VAL_METRIC}): final value, steps to "
                     + " / ".join(f"{100 * f:g}" for f in VAL_FRACTIONS) + " % of it, area under the curve per step")


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


def value(number: float | None, digits: int = 3) -> str:
    """One number with no spread (a zero-shot run, a single trial) in the same format; '–' where missing."""
    return fmt_mean_std(number, None, 1, digits)


def ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """A fitted value with its confidence interval: `mean [low, high]`."""
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def ratio_rows(table: pd.DataFrame, lead, keys, zero_shot=None, zero_lead: list[str] = ()) -> list[list]:
    """The rows of a per-ratio Markdown table: `lead(row)`'s cells, then `cell` of each (key, digits) of
    `keys`; with `zero_shot` (a run's metrics) a first row `zero_lead` + its values."""
    rows = [[*zero_lead, *(value(zero_shot.get(k, math.nan), d) for k, d in keys)]] if zero_shot is not None else []
    return rows + [[*lead(r), *(cell(r, k, d) for k, d in keys)] for _, r in table.iterrows()]


@dataclass(frozen=True)
class ReportFigure:
    name: str      # file name without .png
    caption: str
    figure: Figure


@dataclass(frozen=True)
class CurvePlot:
    """A figure over training steps, drawn from a `ReportModel` (its histories, val histories, window)."""

    name: str                                      # file name without .png
    caption: str
    draw: Callable[["ReportModel"], Figure]
    shows: Callable[["ReportModel"], bool] = lambda model: True  # e.g. only where some run has a val curve


# The curve figures every view shows, in order: a new plot over training steps is one entry (or one
# `registered(...)` from outside the package).
CURVE_PLOTS: list[CurvePlot] = [
    CurvePlot("curves_loss", CAPTIONS["curves_loss"], lambda m: plots.plot_curves(m.histories, "loss", m.window)),
    CurvePlot("curves_mse", CAPTIONS["curves_mse"], lambda m: plots.plot_curves(m.histories, "mse", m.window)),
    CurvePlot("curves_val", CAPTIONS["curves_val"], lambda m: plots.plot_val_curve(m.val_histories, VAL_METRIC),
              lambda m: m.has_val_curve),
]


@contextmanager
def registered(plot: CurvePlot) -> Iterator[CurvePlot]:
    """Show one more curve figure in every report built while the block runs."""
    if any(p.name == plot.name for p in CURVE_PLOTS):
        raise BatchmixError(f"a report figure named {plot.name!r} is already registered")
    CURVE_PLOTS.append(plot)
    try:
        yield plot
    finally:
        CURVE_PLOTS.remove(plot)


class ReportModel:
    """Every run of a sweep (or of several run dirs) and what the report shows of them."""

    def __init__(self, runs: pd.DataFrame, histories: pd.DataFrame, *, val_histories: pd.DataFrame | None = None,
                 objectives: list[str] | None = None, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> None:
        """`val_histories`: `load_val_histories` (None / empty: no run has one); `objectives`: what the runs
        were selected on when there are no run dirs to read it from (an Optuna study's names)."""
        self.runs, self.histories = runs, histories
        self.val_histories = val_histories if val_histories is not None else pd.DataFrame()
        self._objectives = objectives
        self.window, self.tolerance = window, tolerance
        self._figures: dict[str, ReportFigure] = {}

    @classmethod
    def from_dirs(cls, dirs: list[Path], *, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> "ReportModel":
        def stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
            return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

        return cls(stack([load_runs(d, window, tolerance) for d in dirs]), stack([load_histories(d) for d in dirs]),
                   val_histories=stack([load_val_histories(d) for d in dirs]), window=window, tolerance=tolerance)

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

    @cached_property
    def objectives(self) -> list[str]:
        """The runs' objectives (config.yaml; `selection_split.run_objectives`), else those given, else none."""
        if self._objectives is None and "run_dir" in self.runs.columns:
            return run_objectives(self.runs["run_dir"].dropna())
        return list(self._objectives or [])

    def selection_note(self) -> str:
        """The one line saying which split chose the runs (`report/selection_split.py`)."""
        return selection_note(self.objectives)

    @property
    def has_val_curve(self) -> bool:
        return not self.val_histories.empty and VAL_METRIC in self.val_histories.columns

    def by_ratio(self, columns: list[str]) -> pd.DataFrame:
        """Numbers per ratio of the complete runs (`aggregate.by_ratio`: `n`, mean, `<col>/std`)."""
        return by_ratio(self.complete, columns)

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
        """The selection metric (val map/multi), the test headline metrics and whole-run convergence per
        ratio, ordered by val map/multi (test map/multi for runs without validation keys)."""
        steps = f"conv/all/loss/{self.steps_key}"
        headers = {steps: f"loss: steps to {100 * self.tolerance:g} %", "conv/all/loss/auc": "loss: AUC / step",
                   "conv/all/mse/final": "MSE: final", VAL_METRIC: f"{VAL_METRIC} (selection)"}
        sort_by = VAL_METRIC if VAL_METRIC in self.complete.columns else "map/multi"
        return self.summary([VAL_METRIC, *REPORT_HEADLINE, steps, "conv/all/loss/auc", "conv/all/mse/final"], digits={steps: 0},
                            headers=headers, sort_by=sort_by)

    def convergence_tables(self) -> list[tuple[str, pd.DataFrame]]:
        """Per convergence figure (steps to settle, AUC, final): one column per curve and batch type."""
        tables = []
        for figure, label, digits in ((self.steps_key, f"Steps to within {100 * self.tolerance:g} % of the final value", 0),
                                      ("auc", "Area under the curve per step", 3), ("final", "Final smoothed value", 3)):
            keys = {f"conv/{btype}/{curve}/{figure}": f"{curve} · {btype}" for curve in ("loss", "mse") for btype in (*batch_type_names(), ALL)}
            tables.append((label, self.summary(list(keys), {k: digits for k in keys}, keys, runs=self.runs)))
        return tables

    def convergence_note(self) -> str:
        """What the convergence figures mean (definitions: batchmix/eval/convergence.py)."""
        p = f"{100 * self.tolerance:g} %"
        return (f"steps to {p}: the first global step from which the smoothed curve stays within {p} of its final "
                f"smoothed value ('–': it did not stay there for the last {100 * DEFAULT_MIN_SETTLED:g} % of the run, or "
                "the ratio has no batch of that type). AUC/step: trapezoid area under the raw curve divided by its step "
                "span (its mean height; lower = lower loss over the whole run). final: last smoothed value. "
                "Definitions: batchmix/eval/convergence.py.")

    def val_table(self) -> pd.DataFrame:
        """Per ratio, over the runs with a validation curve: final val map/multi, steps to 90 / 95 % of it, AUC."""
        prefix = f"conv/{VAL_METRIC}"
        steps = {f"{prefix}/{fraction_name(f)}": f"steps to {100 * f:g} %" for f in VAL_FRACTIONS}
        headers = {f"{prefix}/final": f"final {VAL_METRIC}", **steps, f"{prefix}/auc": "AUC / step"}
        final = f"{prefix}/final"
        runs = self.runs[pd.to_numeric(self.runs[final], errors="coerce").notna()] if final in self.runs.columns else self.runs.iloc[:0]
        return self.summary(list(headers), {k: 0 for k in steps}, headers, runs=runs)

    def val_note(self) -> str:
        """What the validation curve and its table show, or the one line saying there is none."""
        if not self.has_val_curve:
            return ("No validation curve: no run has a val_history.csv (runs made before validation was logged), "
                    "so the validation figure and table are left out.")
        p = " / ".join(f"{100 * f:g} %" for f in VAL_FRACTIONS)
        return (f"Validation curve: {VAL_METRIC} on the val split at every validation (step 0 = the untrained model). "
                f"steps to {p}: the first validated step at or above that share of the run's own final val value, "
                "so ratios that end at different accuracies compare on speed; AUC/step: trapezoid area under the "
                "val points divided by their step span (mean height; higher = more accurate over the whole run). "
                "Defined by val_convergence in batchmix/eval/convergence.py.")

    def curves_note(self) -> str:
        return (f"Per batch type, smoothed with a bias-corrected EMA (span {self.window} observations of that type) on the "
                "global-step axis; one line per ratio (mean over seeds, band ± 1 sample std). 'all batches' is every step "
                "regardless of type. Line colour = the ratio, the mix of its batch types' corner colours by its shares "
                f"({plots.ratio_key_words(self.histories)}; apart from the built-in batch types' red, blue and green), keyed "
                "beside the panels by a triangle of the ratios, or a legend naming them where they span no triangle.")

    def _figure(self, name: str, caption: str, draw) -> ReportFigure:
        if name not in self._figures:
            self._figures[name] = ReportFigure(name, caption, draw())
        return self._figures[name]

    def curve_figures(self) -> list[ReportFigure]:
        """The figures over training steps (`CURVE_PLOTS`, those it `shows`). Both views show every one
        (report.html in its curves section, the study README under Figures)."""
        return [self._figure(p.name, p.caption, partial(p.draw, self)) for p in CURVE_PLOTS if p.shows(self)]

    def final_vs_ratio_figure(self, prefix: str = "", set_label: str | None = None, name: str = "final_vs_ratio") -> ReportFigure:
        """Final mAP per setting and rank distance against the ratio; `prefix` selects an evaluation set."""
        caption = CAPTIONS["final_vs_ratio"] + (f", {set_label}" if set_label else "")
        return self._figure(name, caption, lambda: plots.plot_final_vs_ratio(
            self.complete, metric=f"{prefix}map", bias=f"{prefix}bias/rank_distance"))

    def ternary_figure(self, values: tuple[str, ...] = ("map/multi", "bias/rank_distance")) -> ReportFigure:
        shown = [v for v in values if v in self.complete.columns]
        return self._figure("ternary", CAPTIONS["ternary"], lambda: plots.plot_ternary(self.complete, shown))
