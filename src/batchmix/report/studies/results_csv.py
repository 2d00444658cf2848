"""A study's results as two small CSV files that can be committed: `results.csv` and `curves.csv`.

Run folders are gitignored (checkpoints, logs, per-setting files: megabytes per run), so a study's
tables could not be checked from the repo. These two files hold what its tables, figures and fits
read, and nothing else:

- `results.csv`, one row per run: `run`, the batch-type shares (`ratio_<type>`), `seed`,
  `train/steps`, every headline metric of every scored split (`val/...`, the reported split with no
  prefix, `<set>/...` for `eval.sets`), and the convergence figures (`conv/...`);
- `curves.csv`, long format (`run`, `curve`, `batch_type`, `step`, `value`): each run's training loss
  and MSE per batch type, averaged over at most `CURVE_POINTS` equal step bins, and every point of
  its val curve (`curve` = `val/<metric>`).

`load_runs` / `load_histories` (batchmix.report.aggregate) read run folders; `read_results` gives
the same columns back from the two files.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from batchmix.core.errors import BatchmixError
from batchmix.eval.baselines import BASELINES
from batchmix.eval.settings import VAL_CURVE_KEYS
from batchmix.report.headlines import STUDY_HEADLINE

RESULTS = "results.csv"
CURVES = "curves.csv"
TIMING = "timing.csv"  # a study's stages and their seconds (from its run.sh's timing.log)
CURVE_POINTS = 50  # bins per training curve: enough for the shape, small enough to commit
_FRONT = ("run", "seed", "train/steps")


def _is_headline(column: str) -> bool:
    """`map/multi`, `val/map/multi`, `mlqa-r/bias/mrc`, ...: a headline metric under any split prefix (one level),
    and a training-free baseline's (`lir/map/multi`, `mlqa-r/shift/map/multi`: batchmix.eval.baselines)."""
    if column in STUDY_HEADLINE:
        return True
    head, _, rest = column.partition("/")
    if head == "before":  # before/...: the untrained model, not a split
        return False
    method, _, metric = rest.partition("/")
    return rest in STUDY_HEADLINE or (head in BASELINES and rest in STUDY_HEADLINE) or (method in BASELINES and metric in STUDY_HEADLINE)


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The committed columns of `load_runs(sweep)`: complete runs only, sorted by shares then seed."""
    complete = runs[runs["status"] == "complete"] if "status" in runs else runs
    shares = [c for c in complete.columns if c.startswith("ratio_")]
    metrics = sorted(c for c in complete.columns if _is_headline(c))
    conv = sorted(c for c in complete.columns if c.startswith("conv/"))
    keep = [c for c in _FRONT if c in complete.columns] + shares + metrics + conv
    return complete[keep].sort_values([*shares, "seed"], ignore_index=True)


def curves_table(histories: pd.DataFrame, val_histories: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """Training loss and MSE per run and batch type in at most `points` step bins (the mean step and
    value of each bin), and the val curves of `VAL_CURVE_KEYS` as they are."""
    frames = []
    for run, hist in histories.groupby("run", sort=False):
        last = int(hist["step"].max())
        width = max(1, math.ceil((last + 1) / points))
        for batch_type, part in hist.groupby("batch_type", sort=False):
            binned = part.assign(bin=part["step"] // width).groupby("bin")
            for curve in ("loss", "mse"):
                if curve in part:
                    means = binned[["step", curve]].mean()
                    frames.append(pd.DataFrame({"run": run, "curve": curve, "batch_type": batch_type,
                                                "step": means["step"].to_numpy(), "value": means[curve].to_numpy()}))
    for run, val in val_histories.groupby("run", sort=False):
        for key in VAL_CURVE_KEYS:
            column = f"val/{key}"
            if column in val:
                frames.append(pd.DataFrame({"run": run, "curve": column, "batch_type": "",
                                            "step": val["step"].to_numpy(dtype=float), "value": val[column].to_numpy()}))
    if not frames:
        return pd.DataFrame(columns=["run", "curve", "batch_type", "step", "value"])
    return pd.concat(frames, ignore_index=True)


def sweep_tables(sweep: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(results, curves) of the complete runs under `sweep`, as the two files hold them; None without one."""
    from batchmix.report.aggregate import load_histories, load_runs, load_val_histories

    runs = load_runs(sweep)
    if runs.empty or not (runs["status"] == "complete").any():
        return None
    table = results_table(runs)
    curves = curves_table(load_histories(sweep), load_val_histories(sweep))
    return table, curves[curves["run"].isin(table["run"])]


def write_results(sweep: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `results.csv` and `curves.csv` of the runs under `sweep` into `out_dir`."""
    tables = sweep_tables(sweep)
    if tables is None:
        raise BatchmixError(f"no complete run (config.yaml + metrics.json) under {sweep}; run the study first")
    table, curves = tables
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / RESULTS, index=False, float_format="%.6g")
    curves.to_csv(out / CURVES, index=False, float_format="%.6g")
    return out / RESULTS, out / CURVES


def read_timing(log: str | os.PathLike) -> pd.DataFrame:
    """Seconds per stage from run.sh's timing.log (`[hh:mm:ss] study: <stage> (<t> s)` at each stage's
    start, t since that invocation began). A resumed study appends a new sequence; stages are summed."""
    marks = []
    for line in Path(log).read_text().splitlines():
        m = re.search(r"study: (\S+) \((\d+) s\)", line)
        if m:
            marks.append((m.group(1), int(m.group(2))))
    seconds: dict[str, int] = {}
    for (stage, t), (_, t_next) in zip(marks, marks[1:]):
        if t_next >= t:  # else the next mark starts a new invocation: this stage was killed, its time unknown
            seconds[stage] = seconds.get(stage, 0) + t_next - t
    return pd.DataFrame({"stage": list(seconds), "seconds": list(seconds.values())})


def write_tables(out: str | os.PathLike, results: pd.DataFrame, curves: pd.DataFrame,
                 timing_log: str | os.PathLike | None = None) -> list[Path]:
    """Write a study's committed files into `out`: results.csv, curves.csv and, when `timing_log` (its
    run.sh's timing.log) is a file, timing.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / RESULTS, index=False, float_format="%.6g")
    curves.to_csv(out / CURVES, index=False, float_format="%.6g")
    written = [out / RESULTS, out / CURVES]
    if timing_log is not None and Path(timing_log).is_file():
        read_timing(timing_log).to_csv(out / TIMING, index=False)
        written.append(out / TIMING)
    return written


def read_results(out_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`results.csv` and `curves.csv` of `out_dir` back as frames (status `complete` added to the runs)."""
    out = Path(out_dir)
    missing = [p for p in (out / RESULTS, out / CURVES) if not p.is_file()]
    if missing:
        raise BatchmixError(f"{missing[0]} not found; write it with batchmix.report.studies.results_csv.write_results(<sweep>, {out})")
    # .copy(): one block per column after the read (pandas 3 warns of a fragmented frame past 100 columns)
    runs = pd.read_csv(out / RESULTS, dtype={"run": str}).copy().assign(status="complete")
    curves = pd.read_csv(out / CURVES, dtype={"run": str, "batch_type": str}, keep_default_na=False, na_values={"value": [""]})
    if not np.isin(curves["run"].unique(), runs["run"].unique()).all():
        raise BatchmixError(f"{out / CURVES} has runs that {out / RESULTS} does not; write both from the same sweep")
    return runs, curves
