"""Selection on validation only: what may choose a ratio, a checkpoint or a pruning decision.

The research protocol: the objective a sweeper optimises, the curve a pruner reads and the
checkpoint `checkpoint.best` keeps are all read from the **val** split; the reported split (test)
and the zero-shot sets are scored for every run and trial but never used to choose, because a ratio
picked by its test score reports an optimistic test score. An objective on a test key is refused
unless `allow_test_selection=true` (say so when you publish).

Checked here, before any data or model loads: `objective`, `pruning.metric`, `eval.val_every_n_steps`,
`checkpoint.best` and `eval.final_from`.
"""

from __future__ import annotations

from typing import Any

from batchmix.config.schema import PruningConfig
from batchmix.core.errors import BatchmixError
from batchmix.eval.scoring import BIAS_HIGHER_IS_BETTER
from batchmix.eval.settings import VAL_CURVE_KEYS, VAL_SPLIT
from batchmix.eval.objectives import check_objective, objective_names

VAL_PREFIX = f"{VAL_SPLIT}/"
FINAL_FROM = ("last", "best")
_LOWER_IS_BETTER = ("bias/", "train/")  # rank distance, own-language share, losses
_HIGHER_IS_BETTER_BIAS = tuple(f"bias/{name}" for name in BIAS_HIGHER_IS_BETTER)  # mean rank correlation


def reads_test(name: str) -> bool:
    """True for a metric of the reported split (`map/multi`), False for `val/...` and `train/...`."""
    return not name.startswith((VAL_PREFIX, "train/"))


def selection_split(objective: Any) -> str:
    """`val`, or `test` when an objective reads the reported split (allow_test_selection=true)."""
    return "test" if any(reads_test(n) for n in objective_names(objective)) else "val"


def mode(name: str) -> str:
    """`max` or `min`: which way `name` improves (for the best checkpoint and pruning)."""
    bare = name.removeprefix(VAL_PREFIX)
    return "min" if bare.startswith(_LOWER_IS_BETTER) and not bare.startswith(_HIGHER_IS_BETTER_BIAS) else "max"


def check_val_every_n_steps(value: Any) -> int:
    if value < 0:  # an int: the schema's type
        raise BatchmixError(f"eval.val_every_n_steps={value!r} must be a non-negative integer (0: validate only before and after training)")
    return value


def check_selection(objective: Any, pruning: PruningConfig, eval_cfg: Any, checkpoint: Any, allow_test: bool) -> None:
    """Every choosing setting reads the val split (or allow_test_selection=true says otherwise):
    `objective`, the `pruning` node, `eval` (val_every_n_steps, final_from), `checkpoint.best`."""
    check_objective(objective)
    names = objective_names(objective)
    pruning_metric = pruning.metric
    for key, name in [*(("objective", n) for n in names), *([("pruning.metric", pruning_metric)] if pruning_metric else [])]:
        if reads_test(name) and not allow_test:
            raise BatchmixError(
                f"{key}={name!r} reads the reported (test) split, which must never choose a ratio or a checkpoint; "
                f"use {key}={VAL_PREFIX}{name} (or allow_test_selection=true to choose on test anyway)"
            )
    every = check_val_every_n_steps(eval_cfg.val_every_n_steps)
    best = checkpoint.best
    final_from = eval_cfg.final_from
    if final_from not in FINAL_FROM:
        raise BatchmixError(f"eval.final_from={final_from!r} is not one of {list(FINAL_FROM)}")
    if final_from == "best" and not best:
        raise BatchmixError("eval.final_from=best needs checkpoint.best=true (the checkpoint it reads)")
    for key, on in (("checkpoint.best", best), ("pruning.enabled", pruning.enabled)):
        if not on:
            continue
        if not every:
            raise BatchmixError(f"{key}=true needs eval.val_every_n_steps > 0: it follows the periodic validations of the val split")
        followed = pruning_metric if key == "pruning.enabled" and pruning_metric else names[0]
        if followed.removeprefix(VAL_PREFIX) not in VAL_CURVE_KEYS or not followed.startswith(VAL_PREFIX):
            curve = ", ".join(VAL_PREFIX + k for k in VAL_CURVE_KEYS)
            raise BatchmixError(f"{key}=true follows {followed!r}, which is not on the val curve; use one of {curve}")


def monitor(objective: Any, pruning_metric: str | None = None) -> tuple[str, str]:
    """(metric, mode) that the best checkpoint (the objective's first name) or pruning
    (`pruning.metric`, null: the objective's) follows."""
    name = pruning_metric or objective_names(objective)[0]
    return name, mode(name)
