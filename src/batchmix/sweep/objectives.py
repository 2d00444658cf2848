"""What a job returns to a sweeper: one metric (`objective: map/multi`) or several for a
multi-objective study (`objective: [map/multi, bias/rank_distance]`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Mapping

from batchmix.errors import BatchmixError


def objective_names(objective: Any) -> list[str]:
    """`objective` as a list of metric names (one name, or a list / ListConfig of names)."""
    names = [objective] if isinstance(objective, str) else list(objective) if isinstance(objective, Sequence) else []
    if not names or not all(isinstance(n, str) and n for n in names):
        raise BatchmixError(f"objective={objective!r} must be a metric name or a list of them, e.g. objective=map/multi")
    return names


def select_objective(objective: Any, metrics: Mapping[str, float]) -> float | list[float]:
    """The value(s) of `objective` in `metrics`: a float for one name, a list for a list (same order).

    A multi-objective study lists its directions in the same order as `objective`.
    """
    names = objective_names(objective)
    missing = [n for n in names if n not in metrics]
    if missing:
        raise BatchmixError(
            f"objective {', '.join(map(repr, missing))} is not a metric of this run; pick keys of "
            f"metrics.json, e.g. objective=map/multi or objective=[map/multi,bias/rank_distance]"
        )
    values = [float(metrics[n]) for n in names]
    return values[0] if isinstance(objective, str) else values
