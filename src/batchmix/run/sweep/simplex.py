"""Points on the ratio simplex (one share per batch type of `batchmix.mixing.batch_types`, summing to 1): a full
grid for `sweep=simplex_grid`, and a uniform map from free coordinates in [0, 1] for samplers that only
know boxes (Optuna).

Both only ever produce points on the simplex, so a sweep never launches (or rejects) an
impossible ratio.
"""

from __future__ import annotations

import math
from typing import Sequence

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from batchmix.mixing.batch_types import batch_type_names
from batchmix.core.errors import BatchmixError

DECIMALS = 6  # shares are rounded here: a batch count cannot resolve finer ratios anyway
GRID_RESOLVER = "bm_simplex_grid"
POINT_RESOLVER = "bm_ratio_of_point"


class GridStepError(BatchmixError, InterpolationResolutionError, CompactHydraException):
    """A bad `sweep.step`, raised while Hydra resolves the sweeper's params: as an
    InterpolationResolutionError OmegaConf passes it on unwrapped, and Hydra prints a
    CompactHydraException as its message alone, so the user sees one line, not a traceback."""


def simplex_grid(step: float, dims: int | None = None) -> list[tuple[float, ...]]:
    """Every point of the `dims`-simplex whose shares are multiples of `step` (1/step must be an integer).

    `dims`: default the number of batch types (shares in registry order). n = 1/step gives
    C(n + dims - 1, dims - 1) points: step 0.25 -> 15, step 0.5 -> 6 (dims 3).
    Order: first share descending, then the next, so the corners come first and last.
    """
    dims = len(batch_type_names()) if dims is None else dims
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 1:
        raise GridStepError(f"sweep.step={step!r} must be a number in (0, 1] that divides 1, e.g. sweep.step=0.25")
    n = round(1 / step)
    if abs(n * step - 1) > 1e-9:
        raise GridStepError(f"sweep.step={step!r} does not divide 1 (1/step = {1 / step:g}): use e.g. 0.5, 0.25, 0.2, 0.1")

    def compositions(total: int, parts: int):
        if parts == 1:
            yield (total,)
            return
        for first in range(total, -1, -1):
            for rest in compositions(total - first, parts - 1):
                yield (first, *rest)

    return [tuple(round(k / n, 10) for k in counts) for counts in compositions(n, dims)]


def grid_choice(step: float) -> str:
    """The grid as a Hydra choice sweep of lists, `[1.0,0.0,0.0],[0.75,0.25,0.0],...` (resolver `bm_simplex_grid`)."""
    return ",".join("[" + ",".join(repr(float(x)) for x in point) + "]" for point in simplex_grid(step))


def ratio_of_point(point: Sequence[float]) -> DictConfig:
    """A grid point (shares in registry order) as the ratio node `{mono: .., cross: .., ...}`
    (resolver `bm_ratio_of_point`, so conf/sweep/simplex_grid.yaml names no batch type)."""
    names = batch_type_names()
    if len(point) != len(names):
        raise GridStepError(f"sweep.point={list(point)} has {len(point)} shares but there are {len(names)} batch types "
                            f"({', '.join(names)}): give one share per type, in that order")
    return OmegaConf.create(dict(zip(names, (float(x) for x in point))))


def point_from_unit(coords: Sequence[float]) -> tuple[float, ...]:
    """Map k-1 coordinates in [0, 1] to a point of the k-simplex, uniformly (Dirichlet(1, ..., 1)).

    Stick breaking with inverse CDFs: the remaining mass shrinks by `u_i ** (1 / (k-1-i))`, so the
    share broken off at step i is Beta(1, k-1-i) of what remains, which is how Dirichlet(1, ..., 1)
    factorises. For k = 3 this is the triangle map of Osada et al., "Shape distributions" (2002):
    (1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v). Every (u, v) lands on the simplex, so a sampler
    over the unit square never proposes an impossible ratio and nothing is rejected.

    Shares are rounded to DECIMALS via rounded cumulative sums, so they stay >= 0 and sum to 1.
    """
    k = len(coords) + 1
    remaining, cumulative, boundaries = 1.0, 0.0, [0.0]
    for i, u in enumerate(coords):
        if not 0.0 <= float(u) <= 1.0 or math.isnan(float(u)):
            raise BatchmixError(f"simplex coordinate {u!r} is not in [0, 1]")
        shrunk = remaining * float(u) ** (1.0 / (k - 1 - i))
        cumulative += remaining - shrunk
        remaining = shrunk
        boundaries.append(round(cumulative, DECIMALS))
    boundaries.append(1.0)
    return tuple(round(b - a, DECIMALS) for a, b in zip(boundaries, boundaries[1:]))


def register_resolvers() -> None:
    """`${bm_simplex_grid:<step>}` and `${bm_ratio_of_point:<point>}` for conf/sweep/simplex_grid.yaml."""
    if not OmegaConf.has_resolver(GRID_RESOLVER):
        OmegaConf.register_new_resolver(GRID_RESOLVER, grid_choice)
    if not OmegaConf.has_resolver(POINT_RESOLVER):
        OmegaConf.register_new_resolver(POINT_RESOLVER, ratio_of_point)
