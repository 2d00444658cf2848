"""Which split the runs were selected on, said in one line at the top of every report.

A number used to choose (a checkpoint, a trial, a ratio) is optimistic; a reader must know which
numbers were and which were not. The objective in each run's config.yaml names it: `val/...` reads
the val split, so the test and zero-shot numbers are untouched estimates; anything else but
`train/...` reads the test split (only allowed with `allow_test_selection=true`), and the report says
so plainly. The rule is `batchmix.eval.selection.reads_test`, the one training enforces.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from batchmix.eval.convergence import VAL_METRIC
from batchmix.core.run_dir import RunDir
from batchmix.eval.selection import VAL_PREFIX, reads_test


def run_objectives(run_dirs: Iterable[str | os.PathLike]) -> list[str]:
    """The distinct objectives of the runs' config.yaml (`objective`: a name or a list of names), in
    first-seen order; `val/map/multi` (the default) for a run whose config has none."""
    seen: dict[str, None] = {}
    for run_dir in run_dirs:
        objective = RunDir(run_dir).read_config().get("objective") or VAL_METRIC
        for name in objective if isinstance(objective, (list, tuple)) else [objective]:
            seen[str(name)] = None
    return list(seen)


def selection_note(objectives: Iterable[str] | None = None) -> str:
    """One line naming the selection split of `objectives` (none given: the default `val/map/multi`).
    `val/...` reads the val split, `train/...` the training curve (no evaluation split), anything else test."""
    objectives = list(objectives or []) or [VAL_METRIC]
    names = ", ".join(f"`{o}`" for o in objectives)
    plural = "s" if len(objectives) > 1 else ""
    test = [o for o in objectives if reads_test(o)]
    if test:
        which = ", ".join(f"`{o}`" for o in test)
        verb = "reads" if len(test) == 1 else "read"
        return (f"Selection split: test, not val: objective{'s' if len(test) > 1 else ''} {which} {verb} the test split "
                "(allow_test_selection=true), so the test numbers below were used to choose and are optimistic.")
    split = "val" if any(o.startswith(VAL_PREFIX) for o in objectives) else "none (the training curve)"
    return f"Selection split: {split} (objective{plural} {names}); test and zero-shot sets are reported, never used to choose."
