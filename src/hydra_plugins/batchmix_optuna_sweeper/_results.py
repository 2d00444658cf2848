"""What a study leaves in the sweep dir: every trial as a table, and its best trial(s)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from batchmix.eval.selection import selection_split
from batchmix.eval.objectives import objective_names

log = logging.getLogger(__name__)


def write_results(study: optuna.Study, sweep_dir: Path, objective: Any = None) -> None:
    """`optuna_trials.csv`; plus `pareto_front.csv` (multi-objective: `study.best_trials`, the
    non-dominated COMPLETE trials) or `optimization_results.yaml` (single objective: the best trial,
    the objective it was chosen on and that objective's split, `val` unless allow_test_selection)."""
    table = study.trials_dataframe(multi_index=False)  # number, value(s), params, user attrs, state
    if table.empty:
        return
    table.to_csv(sweep_dir / "optuna_trials.csv", index=False)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        table[table["number"].isin(front)].to_csv(sweep_dir / "pareto_front.csv", index=False)
        log.info("Pareto front: %d of %d complete trials -> %s", len(front), len(complete), sweep_dir / "pareto_front.csv")
    else:
        best = study.best_trial
        OmegaConf.save(
            OmegaConf.create({"name": study.study_name, "best_trial": best.number, "best_value": best.value,
                              **({"objective": objective_names(objective)[0], "selection_split": selection_split(objective)} if objective else {}),
                              "best_params": dict(best.params), "best_user_attrs": _plain(best.user_attrs)}),
            sweep_dir / "optimization_results.yaml",
        )
        log.info("best trial %d: value %.4f, %s", best.number, best.value, _plain(best.user_attrs))


def _plain(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if isinstance(v, (int, float, str, bool))}
