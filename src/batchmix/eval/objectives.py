"""What a job returns to a sweeper: one metric (`objective: val/map/multi`) or several for a
multi-objective study (`objective: [val/map/multi, val/bias/rank_distance]`).

The names: `val/<metric>` (the final validation of the val split), `<metric>` (the reported split,
test by default: refused unless `allow_test_selection=true`, `batchmix.eval.selection`) and `train/...`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Mapping

from batchmix.core.errors import BatchmixError
from batchmix.eval.metrics import metric_names
from batchmix.eval.scoring import BIAS_NAMES
from batchmix.eval.settings import EVAL_SETTINGS


def objective_names(objective: Any) -> list[str]:
    """`objective` as a list of metric names (one name, or a list / ListConfig of names)."""
    names = [objective] if isinstance(objective, str) else list(objective) if isinstance(objective, Sequence) else []
    if not names or not all(isinstance(n, str) and n for n in names):
        raise BatchmixError(f"objective={objective!r} must be a metric name or a list of them, e.g. objective=val/map/multi")
    return names


def _alternatives(names: Sequence[str]) -> str:
    return "|".join(map(re.escape, names))


def objective_pattern() -> re.Pattern[str]:
    """The metric keys an objective may name, from the names the evaluation owns (eval/metrics.py,
    eval/scoring.py): a new metric there is a valid objective here. Plus any `train/...` summary."""
    lang = r"[a-z]{2,3}"
    return re.compile(
        rf"^(val/)?({_alternatives(metric_names())})/({_alternatives(EVAL_SETTINGS)})(/{lang}(-{lang})?)?$"
        rf"|^(val/)?bias/({_alternatives(BIAS_NAMES)})(/{lang})?$|^train/.+$"
    )


def check_objective(objective: Any) -> None:
    """A misspelt objective would otherwise only fail after training, when metrics.json is read."""
    pattern = objective_pattern()
    for name in objective_names(objective):
        if not pattern.match(name):
            raise BatchmixError(
                f"objective {name!r} is not a batchmix metric: use e.g. val/map/multi, val/map/cross/de-en, "
                f"val/ndcg@10/mono, val/bias/rank_distance (or a list of them)"
            )


def select_objective(objective: Any, metrics: Mapping[str, float]) -> float | list[float]:
    """The value(s) of `objective` in `metrics`: a float for one name, a list for a list (same order).

    A multi-objective study lists its directions in the same order as `objective`.
    """
    names = objective_names(objective)
    missing = [n for n in names if n not in metrics]
    if missing:
        raise BatchmixError(
            f"objective {', '.join(map(repr, missing))} is not a metric of this run; pick keys of "
            f"metrics.json, e.g. objective=val/map/multi or objective=[val/map/multi,val/bias/rank_distance]"
        )
    values = [float(metrics[n]) for n in names]
    return values[0] if isinstance(objective, str) else values
