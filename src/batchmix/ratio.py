"""The hybrid schedule's mixing ratio `mono : cross : multi` and its per-epoch batch counts.

A ratio is three shares >= 0 that sum to 1. In the Hydra config `cross` defaults to the
complement `1 - mono - multi` (resolver `bm_complement`), so `ratio.mono=0.2` means
0.2 / 0.8 / 0.0 and `ratio.mono=0.2 ratio.multi=0.3` means 0.2 / 0.5 / 0.3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from batchmix.errors import BatchmixError

BATCH_TYPES: tuple[str, ...] = ("mono", "cross", "multi")
_TOL = 1e-6


def complement(*shares: Any) -> Any:
    """`1 - sum(shares)`, rounded to kill float noise (0.2 + 0.3 -> 0.5, not 0.49999999999999994).

    Non-numbers are returned unchanged so `Ratio.from_mapping` can name them in its error
    instead of OmegaConf raising from inside the resolver.
    """
    try:
        return round(1.0 - sum(float(s) for s in shares), 12)
    except (TypeError, ValueError):
        return "?"


@dataclass(frozen=True)
class Ratio:
    mono: float
    cross: float
    multi: float

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "Ratio":
        """Validate a `{mono, cross, multi}` mapping; raise one clear line if it is impossible."""
        unknown = sorted(set(cfg) - set(BATCH_TYPES))
        if unknown:
            raise BatchmixError(f"unknown ratio key(s) {unknown}: a ratio has only mono, cross, multi (e.g. ratio.mono=0.5)")
        values: dict[str, float] = {}
        for key in ("mono", "multi", "cross"):  # the given shares first: cross is derived from them by default
            raw = cfg.get(key, 0.0)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise BatchmixError(f"ratio.{key}={raw!r} is not a number: give a share in [0, 1], e.g. ratio.{key}=0.5") from None
            if math.isnan(value) or math.isinf(value):
                raise BatchmixError(f"ratio.{key}={raw!r} is not a finite number: give a share in [0, 1]")
            values[key] = value
        shown = ", ".join(f"{k}={values[k]:g}" for k in BATCH_TYPES)
        negative = [k for k in BATCH_TYPES if values[k] < -_TOL]
        if negative:
            hint = (
                " (cross is 1 - mono - multi unless set, so mono + multi must not exceed 1)"
                if "cross" in negative
                else ""
            )
            raise BatchmixError(f"ratio {shown} has a negative share ({', '.join(negative)}){hint}: every share must be >= 0")
        total = sum(values.values())
        if abs(total - 1.0) > _TOL:
            raise BatchmixError(
                f"ratio {shown} sums to {total:g}, not 1: make the shares sum to 1 "
                f"(or leave ratio.cross unset so it fills the complement)"
            )
        return cls(**{k: max(0.0, values[k]) for k in BATCH_TYPES})

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in BATCH_TYPES}

    def active(self) -> list[str]:
        """Batch types with a positive share."""
        return [k for k in BATCH_TYPES if getattr(self, k) > 0]

    def counts(self, n_batches: int) -> dict[str, int]:
        """Exact per-epoch batch counts by largest-remainder (Hamilton) rounding.

        Floors each `share * n`, then gives the leftover batches to the largest fractional
        parts (ties: mono before cross before multi), so counts always sum to `n_batches`.
        """
        if n_batches < 0:
            raise BatchmixError(f"number of batches {n_batches} must be >= 0")
        # Round first so 0.29 * 100 = 28.999999999999996 counts as 29, not 28 + a remainder.
        quotas = {k: round(getattr(self, k) * n_batches, 9) for k in BATCH_TYPES}
        counts = {k: math.floor(q) for k, q in quotas.items()}
        leftover = n_batches - sum(counts.values())
        by_remainder = sorted(BATCH_TYPES, key=lambda k: (-(quotas[k] - counts[k]), BATCH_TYPES.index(k)))
        for k in by_remainder[:leftover]:
            counts[k] += 1
        return counts

    def label(self) -> str:
        return "/".join(f"{getattr(self, k):g}" for k in BATCH_TYPES)
