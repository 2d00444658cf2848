"""The hybrid schedule's mixing ratio over the batch types (`batchmix.mixing.batch_types`) and its per-epoch
batch counts.

A ratio is one share >= 0 per registered batch type, summing to 1 (a type left out has share 0).
In the Hydra config `cross` defaults to the complement of every other share in the ratio node
(resolver `bm_complement`, `cross: ${bm_complement:cross}`), so `ratio.mono=0.2` means
0.2 / 0.8 / 0.0, `ratio.mono=0.2 ratio.multi=0.3` means 0.2 / 0.5 / 0.3, and a fourth type added
with `+ratio.pivot=0.2` takes its share from cross too.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from batchmix.mixing.batch_types import batch_type_names
from batchmix.core.errors import BatchmixError

COMPLEMENT_KEY = "cross"  # the share conf/ratio/default.yaml fills with the complement
_UNRESOLVED = "?"  # what `complement` returns for non-numbers, so from_mapping names the bad share
_TOL = 1e-6


def complement(*shares: Any, _parent_: Any = None) -> Any:
    """`1 - sum(shares)`, rounded to kill float noise (0.2 + 0.3 -> 0.5, not 0.49999999999999994).

    `${bm_complement:cross}` (one key name): 1 - the sum of every *other* share in the same config
    node (OmegaConf passes the node as `_parent_`), so shares added later count too.
    Non-numbers give "?" so `Ratio.from_mapping` can name them in its error instead of OmegaConf
    raising from inside the resolver.
    """
    if len(shares) == 1 and isinstance(shares[0], str) and _parent_ is not None and shares[0] in _parent_:
        shares = tuple(_parent_[k] for k in _parent_ if k != shares[0])
    try:
        return round(1.0 - sum(float(s) for s in shares), 12)
    except (TypeError, ValueError):
        return _UNRESOLVED


class Ratio:
    """Shares by batch-type name, in registry order. `Ratio(0.2, 0.5, 0.3)` fills mono, cross, multi;
    `Ratio(mono=0.5, pivot=0.5)` names them; unnamed types get 0. Immutable."""

    def __init__(self, *shares: float, **named: float) -> None:
        names = batch_type_names()
        if len(shares) > len(names):
            raise BatchmixError(f"{len(shares)} shares given but only {len(names)} batch types are registered ({', '.join(names)})")
        unknown = sorted(set(named) - set(names))
        if unknown:
            raise BatchmixError(f"unknown batch type(s) {unknown}; registered: {', '.join(names)}")
        values = dict.fromkeys(names, 0.0)
        values.update(zip(names, shares))
        values.update(named)
        object.__setattr__(self, "_shares", {k: float(v) for k, v in values.items()})

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "Ratio":
        """Validate a `{name: share}` mapping; raise one clear line if it is impossible."""
        names = batch_type_names()
        unknown = sorted(set(cfg) - set(names))
        if unknown:
            raise BatchmixError(f"unknown ratio key(s) {unknown}: a ratio has only {', '.join(names)} (e.g. ratio.mono=0.5)")
        values: dict[str, float] = {}
        # The given shares first, the complement ("?" when a share it sums is not a number) last.
        order = sorted(names, key=lambda k: isinstance(cfg.get(k), str) and cfg.get(k) == _UNRESOLVED)
        for key in order:
            raw = cfg.get(key, 0.0)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise BatchmixError(f"ratio.{key}={raw!r} is not a number: give a share in [0, 1], e.g. ratio.{key}=0.5") from None
            if math.isnan(value) or math.isinf(value):
                raise BatchmixError(f"ratio.{key}={raw!r} is not a finite number: give a share in [0, 1]")
            values[key] = value
        shown = ", ".join(f"{k}={values[k]:g}" for k in names)
        negative = [k for k in names if values[k] < -_TOL]
        if negative:
            others = [k for k in names if k != COMPLEMENT_KEY]
            hint = (
                f" ({COMPLEMENT_KEY} is 1 - {' - '.join(others)} unless set, so {' + '.join(others)} must not exceed 1)"
                if COMPLEMENT_KEY in negative
                else ""
            )
            raise BatchmixError(f"ratio {shown} has a negative share ({', '.join(negative)}){hint}: every share must be >= 0")
        total = sum(values.values())
        if abs(total - 1.0) > _TOL:
            raise BatchmixError(
                f"ratio {shown} sums to {total:g}, not 1: make the shares sum to 1 "
                f"(or leave ratio.{COMPLEMENT_KEY} unset so it fills the complement)"
            )
        return cls(**{k: max(0.0, values[k]) for k in names})

    def as_dict(self) -> dict[str, float]:
        return dict(self._shares)

    def names(self) -> tuple[str, ...]:
        return tuple(self._shares)

    def __getitem__(self, name: str) -> float:
        if name in self._shares:
            return self._shares[name]
        if name in batch_type_names():  # registered after this ratio was made: no share
            return 0.0
        raise KeyError(name)

    def __getattr__(self, name: str) -> float:
        if name.startswith("_"):  # copy/pickle probe before _shares exists
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"Ratio has no batch type {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Ratio is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ratio):
            return NotImplemented
        return self._nonzero() == other._nonzero()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._nonzero().items())))

    def _nonzero(self) -> dict[str, float]:
        return {k: v for k, v in self._shares.items() if v}

    def __repr__(self) -> str:
        return "Ratio(" + ", ".join(f"{k}={v!r}" for k, v in self._shares.items()) + ")"

    def __reduce__(self):
        return (_ratio_from_dict, (self.as_dict(),))

    def counts(self, n_batches: int) -> dict[str, int]:
        """Exact per-epoch batch counts by largest-remainder (Hamilton) rounding.

        Floors each `share * n`, then gives the leftover batches to the largest fractional
        parts (ties: registry order, mono before cross before multi), so counts always sum to `n_batches`.
        """
        if n_batches < 0:
            raise BatchmixError(f"number of batches {n_batches} must be >= 0")
        names = list(self._shares)
        # Round first so 0.29 * 100 = 28.999999999999996 counts as 29, not 28 + a remainder.
        quotas = {k: round(self._shares[k] * n_batches, 9) for k in names}
        counts = {k: math.floor(q) for k, q in quotas.items()}
        leftover = n_batches - sum(counts.values())
        by_remainder = sorted(names, key=lambda k: (-(quotas[k] - counts[k]), names.index(k)))
        for k in by_remainder[:leftover]:
            counts[k] += 1
        return counts

    def label(self) -> str:
        """The shares joined by '/', in `names()` order, e.g. `0.2/0.5/0.3`."""
        return "/".join(f"{v:g}" for v in self._shares.values())


def _ratio_from_dict(shares: dict[str, float]) -> Ratio:
    ratio = Ratio.__new__(Ratio)
    object.__setattr__(ratio, "_shares", dict(shares))
    return ratio
