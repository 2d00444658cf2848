"""The search space: `hydra.sweeper.params` and command-line sweeps in Hydra's override grammar
turned into Optuna distributions, and a trial turned back into job overrides.

Grammar as in hydra-optuna-sweeper: `interval(a, b)` -> FloatDistribution (`int(interval(a, b))`
-> IntDistribution; `tag(log, interval(a, b))` -> log scale), `choice(a, b)` -> CategoricalDistribution,
`range(start, stop, step)` -> stepped Int/FloatDistribution over Python's range values (stop
excluded, as Hydra's basic sweeper does), a plain value -> passed unchanged to every job.
Added: `simplex(a, b, c)` -> a point of the simplex over the sub-keys `<key>.a`, `<key>.b`,
`<key>.c`, sampled as free coordinates `<key>.u1`, `<key>.u2` in [0, 1] and mapped uniformly onto
the simplex (`batchmix.run.sweep.simplex.point_from_unit`), so no sampled point is ever rejected.
`simplex()` with no names: one component per batch type of `batchmix.mixing.batch_types`, read when the
trial is sampled (`ratio: simplex()` covers a type registered later too).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from batchmix.mixing.batch_types import batch_type_names
from batchmix.run.sweep.simplex import point_from_unit


@dataclass(frozen=True)
class SimplexParam:
    """`key: simplex(a, b, c)`: shares for `key.a`, `key.b`, `key.c` that are >= 0 and sum to 1.
    No components (`simplex()`): the batch types registered when the trial is sampled."""

    key: str
    components: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.components or batch_type_names()

    @property
    def coordinates(self) -> list[str]:
        return [f"{self.key}.u{i + 1}" for i in range(len(self.names) - 1)]

    def values(self, trial: optuna.Trial) -> dict[str, float]:
        coords = [trial.suggest_float(name, 0.0, 1.0) for name in self.coordinates]
        return {f"{self.key}.{c}": share for c, share in zip(self.names, point_from_unit(coords))}


@dataclass(frozen=True)
class _SimplexSpec:
    components: tuple[str, ...]


# No `from __future__ import annotations` in this module: Hydra type-checks grammar function
# arguments against these annotations at runtime.
def _simplex(*components: str) -> _SimplexSpec:
    """Grammar function `simplex(a, b, c)` (or `simplex()`: every batch type); SearchSpace.parse turns
    its value into a SimplexParam."""
    if len(components) == 1 or len(set(components)) != len(components):
        raise ValueError(f"simplex() needs two or more distinct component names (or none: every batch type), got {list(components)}")
    return _SimplexSpec(tuple(components))


def _parser() -> OverridesParser:
    parser = OverridesParser.create()
    parser.functions.register(name="simplex", func=_simplex)
    return parser


def _choices(override: Override) -> list[Any]:
    return list(override.sweep_iterator(transformer=Transformer.encode))


def _distribution(override: Override) -> BaseDistribution | None:
    """Optuna distribution of a sweep override; None for a plain (fixed) value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if override.is_choice_sweep():
        assert isinstance(value, ChoiceSweep)
        return CategoricalDistribution(_choices(override))
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep) and value.start is not None and value.stop is not None
        if value.shuffle:
            return CategoricalDistribution(_choices(override))
        items = _choices(override)
        if not items:
            raise ValueError(f"{override.input_line}: the range is empty")
        if all(isinstance(x, int) for x in (value.start, value.stop, value.step)):
            return IntDistribution(int(items[0]), int(items[-1]), step=int(value.step))
        return FloatDistribution(float(items[0]), float(items[-1]), step=float(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep) and value.start is not None and value.end is not None
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"{override.input_line}: this kind of sweep is not supported by the batchmix Optuna sweeper")


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, CategoricalDistribution)
    return trial.suggest_categorical(name, dist.choices)


def _format(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return Transformer.str(value)


@dataclass
class SearchSpace:
    distributions: Dict[str, BaseDistribution] = field(default_factory=dict)
    simplexes: List[SimplexParam] = field(default_factory=list)
    fixed: Dict[str, str] = field(default_factory=dict)  # key -> "key=value" override, in input order

    @classmethod
    def parse(cls, overrides: Sequence[str]) -> "SearchSpace":
        """Later overrides of a key replace earlier ones (command line after `hydra.sweeper.params`)."""
        space = cls()
        for override in _parser().parse_overrides(list(overrides)):
            key = override.get_key_element()
            for store in (space.distributions, space.fixed):
                store.pop(key, None)
            space.simplexes = [s for s in space.simplexes if s.key != key]
            value = override.value()
            if isinstance(value, _SimplexSpec):
                space.simplexes.append(SimplexParam(key, value.components))
                continue
            dist = _distribution(override)
            if dist is None:
                space.fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
            else:
                space.distributions[key] = dist
        return space

    def suggest(self, trial: optuna.Trial) -> tuple[list[str], dict[str, float]]:
        """(job overrides, derived values to record as user attrs) for a freshly asked trial."""
        overrides = list(self.fixed.values())
        for name, dist in self.distributions.items():
            overrides.append(f"{name}={_format(_suggest(trial, name, dist))}")
        derived: dict[str, float] = {}
        for simplex in self.simplexes:
            derived.update(simplex.values(trial))
        overrides += [f"{k}={_format(v)}" for k, v in derived.items()]
        return overrides, derived
