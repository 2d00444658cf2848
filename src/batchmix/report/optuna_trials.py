"""An Optuna study as a table: from the files a sweep leaves (`optuna_trials.csv`, `pareto_front.csv`,
optional `optuna_study.json`) or straight from its storage (`optuna.load_study`).

The CSV is what `study.trials_dataframe(multi_index=False)` writes: `number`, `state`, `value` /
`value_<metric name>` (one objective) or `values_<i>` / `values_<metric name>` (several),
`params_<name>`, `user_attrs_<name>`. A trial's ratio (one share per batch type of
`batchmix.mixing.batch_types`) comes from the user attributes `ratio.mono` / `ratio.cross` / `ratio.multi` / ...
(what the batchmix Optuna sweeper records) or `ratio_mono` / ..., else from params of those names or
`mono` / ...; a single missing share is the complement. Objective
directions and the study name come from the study itself (storage), else from `optuna_study.json`
(`{"study_name": ..., "directions": [...], "metric_names": [...]}`) or the `hydra.sweeper` node of the
sweep's `multirun.yaml` (`study_name`, `direction`); failing those, a name rule: `bias/*` (but `bias/mrc`), `*loss*`, `*mse*`
are minimised, everything else maximised.
"""

from __future__ import annotations

import ast
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from batchmix.core.errors import BatchmixError
from batchmix.report.aggregate import ratio_columns, ratio_label

TRIALS_FILE = "optuna_trials.csv"
PARETO_FILE = "pareto_front.csv"
STUDY_FILE = "optuna_study.json"


@dataclass
class StudyTable:
    """Normalised trials: `number`, `state` (COMPLETE, PRUNED, ...), one column per objective (named by
    metric), ratio columns + `ratio` label, then `params_*` / `user_attrs_*` as given."""

    trials: pd.DataFrame
    objectives: list[str]
    directions: list[str]
    pareto: list[int] = field(default_factory=list)  # trial numbers on the Pareto front (multi-objective)
    name: str | None = None

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def completed(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == "COMPLETE"].dropna(subset=self.objectives)


def guess_direction(metric: str) -> str:
    from batchmix.eval.selection import mode

    name = metric.lower()
    return "minimize" if mode(name) == "min" or "loss" in name or "mse" in name else "maximize"


def _objective_columns(df: pd.DataFrame) -> dict[str, str]:
    """{column in the CSV: objective name}: `value`, `value_<name>` (one named objective),
    `values_<name>` or `values_<i>` (several)."""
    if "value" in df.columns:
        return {"value": "value"}
    named = [c for c in df.columns if c.startswith("value_")]
    if len(named) == 1:
        return {named[0]: named[0][len("value_"):]}
    cols = [c for c in df.columns if c.startswith("values_")]
    return {c: (f"objective {c[7:]}" if c[7:].isdigit() else c[7:]) for c in cols}


def normalise_trials(df: pd.DataFrame, metric_names: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Rename objective columns to metric names, add ratio columns; returns (trials, objective names)."""
    df = df.copy()
    if "number" not in df.columns:
        raise BatchmixError("the Optuna trials table has no `number` column; write it with study.trials_dataframe()")
    df["state"] = df["state"].map(lambda v: str(v).split(".")[-1].upper()) if "state" in df.columns else "COMPLETE"
    if "values" in df.columns and "value" not in df.columns:  # one column holding lists
        parsed = df["values"].map(lambda v: ast.literal_eval(v) if isinstance(v, str) and v.startswith("[") else v)
        width = max((len(v) for v in parsed if isinstance(v, (list, tuple))), default=0)
        for i in range(width):
            df[f"values_{i}"] = parsed.map(lambda v, i=i: v[i] if isinstance(v, (list, tuple)) and len(v) > i else math.nan)
        df = df.drop(columns="values")
    mapping = _objective_columns(df)
    if not mapping:
        raise BatchmixError("the Optuna trials table has no `value`, `value_<name>` or `values_*` column; write it with study.trials_dataframe(multi_index=False)")
    names = list(mapping.values())
    if metric_names and len(metric_names) == len(names):
        names = list(metric_names)
    df = df.rename(columns=dict(zip(mapping, names)))
    for name in names:
        df[name] = pd.to_numeric(df[name], errors="coerce")
    columns = ratio_columns()
    shares = {}
    for col in columns:
        btype = col.removeprefix("ratio_")
        for source in (f"user_attrs_ratio.{btype}", f"user_attrs_{col}", f"params_ratio.{btype}", f"params_{col}", f"params_{btype}"):
            if source in df.columns:
                shares[col] = pd.to_numeric(df[source], errors="coerce")
                break
    if len(shares) == len(columns) - 1 and shares:
        (missing,) = set(columns) - set(shares)
        shares[missing] = (1.0 - sum(shares.values())).round(12)
    if len(shares) == len(columns):
        for col in columns:
            df[col] = shares[col].round(6)
        # Sampled ratios are continuous: 3 decimals label them readably (the columns keep 6).
        df["ratio"] = [ratio_label(*r, digits=3) if not any(pd.isna(v) for v in r) else "" for r in df[list(columns)].itertuples(index=False)]
    return df.sort_values("number", ignore_index=True), names


def pareto_numbers(trials: pd.DataFrame, objectives: list[str], directions: list[str]) -> list[int]:
    """Trial numbers not dominated by another completed trial (>= in every objective after turning
    minimised ones into maximised, > in one). O(n^2) on purpose: studies here have tens of trials."""
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=objectives)
    if done.empty:
        return []
    signs = np.array([1.0 if d.startswith("max") else -1.0 for d in directions])
    values = done[objectives].to_numpy(dtype=float) * signs
    dominated = [np.any(np.all(values >= v, axis=1) & np.any(values > v, axis=1)) for v in values]
    return sorted(int(n) for n, d in zip(done["number"], dominated) if not d)


def load_study_files(sweep_dir: str | os.PathLike) -> StudyTable | None:
    """The study a sweeper left in `sweep_dir`, or None if it left no `optuna_trials.csv`."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / TRIALS_FILE
    if not path.is_file():
        return None
    meta = _sweeper_config(sweep_dir)
    if (sweep_dir / STUDY_FILE).is_file():
        try:
            meta.update(json.loads((sweep_dir / STUDY_FILE).read_text()))
        except json.JSONDecodeError:
            pass
    trials, names = normalise_trials(pd.read_csv(path), meta.get("metric_names"))
    directions = [str(d).split(".")[-1].lower() for d in meta.get("directions") or []]
    if len(directions) != len(names):  # none given, or not one per objective
        directions = [guess_direction(n) for n in names]
    pareto: list[int] = []
    if len(names) > 1:
        front_path = sweep_dir / PARETO_FILE
        if front_path.is_file() and "number" in pd.read_csv(front_path, nrows=0).columns:
            pareto = sorted(int(n) for n in pd.read_csv(front_path)["number"].dropna())
        else:
            pareto = pareto_numbers(trials, names, directions)
    return StudyTable(trials, names, directions, pareto, meta.get("study_name"))


def _sweeper_config(sweep_dir: Path) -> dict:
    """`study_name` and `directions` from the `hydra.sweeper` node of Hydra's `multirun.yaml` in the
    sweep dir (literal values only; interpolations are not resolved here)."""
    import yaml

    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return {}
    try:
        sweeper = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper") or {}
    except yaml.YAMLError:
        return {}
    out: dict = {}
    name = sweeper.get("study_name")
    if isinstance(name, str) and "${" not in name:
        out["study_name"] = name
    direction = sweeper.get("direction")
    direction = [direction] if isinstance(direction, str) else direction
    if isinstance(direction, list) and all(str(d).lower() in ("maximize", "minimize") for d in direction):
        out["directions"] = [str(d).lower() for d in direction]
    return out


def load_study_storage(storage: str, study_name: str | None = None) -> StudyTable:
    """Read a study from any Optuna storage URL (`sqlite:///optuna.db`, `postgresql://...`)."""
    import optuna

    try:
        if study_name is None:
            names = optuna.get_all_study_names(storage=storage)
            if len(names) != 1:
                raise BatchmixError(f"storage {storage} holds studies {names}; name one with --study NAME")
            study_name = names[0]
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise BatchmixError(f"no study {study_name!r} in {storage}; list them with `optuna studies --storage {storage}`") from None
    except BatchmixError:
        raise
    except Exception as err:  # noqa: BLE001 - SQLAlchemy / driver errors become one line
        raise BatchmixError(f"cannot open Optuna storage {storage} ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    df = study.trials_dataframe(multi_index=False)
    if df.empty:
        raise BatchmixError(f"study {study_name!r} in {storage} has no trials yet")
    trials, names = normalise_trials(df, study.metric_names)
    directions = [d.name.lower() for d in study.directions]
    pareto = sorted(t.number for t in study.best_trials) if len(directions) > 1 else []
    return StudyTable(trials, names, directions, pareto, study_name)
