"""The batch types: the one place that lists them and says how each draws its batches.

A batch has exactly one type, and the type decides which in-batch negatives a dual encoder sees
(arXiv 2408.10536). Each entry holds its name (the ratio key `ratio.<name>`, the logging keys
`train/<name>/loss`, the convergence keys `conv/<name>/...`), how the sampler draws the query and
positive languages of its pairs (`draw`), an optional feasibility check run before training (`check`),
and its label and colour in plots. Built in, in this order:

- ``mono``  query and positive share one language — one language for the whole batch
            (``mono_mode="batch"``) or one per pair (``mono_mode="pair"``);
- ``cross`` each positive is in a language different from its query's;
- ``multi`` query and positive languages drawn independently from the languages the id has.

A new type is one `register(BatchType(...))` call (then `ratio.<name>=0.2` — or `+ratio.<name>=0.2`
when conf/ratio has no such key — mixes it in). Consumers call `batch_type_names()` at use time, never
cache it, because the registry can grow after import. A draw must take every random number from
`ctx.rng` and ids only through `ctx.take`, so an epoch stays a pure function of (seed, epoch).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from batchmix.core.errors import BatchmixError

Pair = tuple[int, str, str]  # (id, query language, positive language)


@dataclass(frozen=True)
class DrawContext:
    """What the sampler offers a draw: each id's languages (sorted tuples), the ids having each
    language (languages sorted), the global batch size, `mono_mode`, and, while an epoch is planned,
    the epoch's generator `rng` and `take(eligible)`: the next `batch_size` distinct ids passing
    `eligible(id)` from the epoch's shuffled queue (skipped ids keep their place)."""

    group_langs: Sequence[tuple[str, ...]]
    ids_with_lang: Mapping[str, list[int]]
    batch_size: int
    mono_mode: str = "batch"
    rng: np.random.Generator | None = None
    take: Callable[[Callable[[int], bool]], list[int]] | None = None

    @property
    def languages(self) -> list[str]:
        return list(self.ids_with_lang)


@dataclass(frozen=True)
class BatchType:
    """One batch type. `draw(ctx)` returns the batch's (id, query lang, positive lang) pairs;
    `check(ctx, share)`, run when the ratio gives the type a share > 0, raises a BatchmixError if the
    data cannot fill such batches. `color`: any matplotlib colour (its corner in the report's ratio
    colours); `color_name`: a word for it in legends (default: the colour's hex code)."""

    name: str
    draw: Callable[[DrawContext], list[Pair]]
    label: str
    color: str | tuple[float, float, float]
    check: Callable[[DrawContext, float], None] | None = None
    color_name: str | None = None


_FIX = "lower batch_size or set that share to 0"


def _draw_mono(ctx: DrawContext) -> list[Pair]:
    langs, rng = ctx.group_langs, ctx.rng
    if ctx.mono_mode == "batch":
        usable = [lang for lang in ctx.languages if len(ctx.ids_with_lang[lang]) >= ctx.batch_size]
        lang = usable[rng.integers(len(usable))]
        return [(i, lang, lang) for i in ctx.take(lambda i: lang in langs[i])]
    out = []
    for i in ctx.take(lambda i: True):
        lang = langs[i][rng.integers(len(langs[i]))]
        out.append((i, lang, lang))
    return out


def _check_mono(ctx: DrawContext, share: float) -> None:
    if ctx.mono_mode != "batch":
        return
    best = max((len(v) for v in ctx.ids_with_lang.values()), default=0)
    if best < ctx.batch_size:
        raise BatchmixError(
            f"ratio mono={share:g} is impossible: one-language batches need {ctx.batch_size} ids in one language "
            f"but the largest language has {best}; {_FIX}, or use data.sampler.mono_mode=pair"
        )


def _draw_cross(ctx: DrawContext) -> list[Pair]:
    langs, rng = ctx.group_langs, ctx.rng
    out = []
    for i in ctx.take(lambda i: len(langs[i]) >= 2):
        q = langs[i][rng.integers(len(langs[i]))]
        others = [lang for lang in langs[i] if lang != q]
        out.append((i, q, others[rng.integers(len(others))]))
    return out


def _check_cross(ctx: DrawContext, share: float) -> None:
    n = len(ctx.group_langs)
    n_cross = sum(1 for ls in ctx.group_langs if len(ls) >= 2)
    if n_cross < ctx.batch_size:
        langs = ", ".join(ctx.languages) or "none"
        raise BatchmixError(
            f"ratio cross={share:g} is impossible for this data: cross-lingual batches need ids in >= 2 languages, "
            f"but only {n_cross} of {n} ids have them (languages: {langs}); set ratio.cross=0 "
            f"(e.g. ratio=mono_only) or train on more languages"
        )


def _draw_multi(ctx: DrawContext) -> list[Pair]:
    langs, rng = ctx.group_langs, ctx.rng
    return [(i, langs[i][rng.integers(len(langs[i]))], langs[i][rng.integers(len(langs[i]))]) for i in ctx.take(lambda i: True)]


# Colours: each batch type's own in every per-type figure (report/plots.py: batch_type_palette); ratios are
# coloured apart from these (plots.ratio_colors), so a colour never means a type and a ratio at once.
_BUILTIN = (
    BatchType("mono", _draw_mono, "monolingual", (0.84, 0.15, 0.16), _check_mono, "red"),
    BatchType("cross", _draw_cross, "cross-lingual", (0.12, 0.38, 0.85), _check_cross, "blue"),
    BatchType("multi", _draw_multi, "multilingual", (0.10, 0.62, 0.20), None, "green"),
)
_REGISTRY: dict[str, BatchType] = {t.name: t for t in _BUILTIN}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"all"}  # convergence's every-step curve


def register(batch_type: BatchType) -> BatchType:
    """Add a batch type after the built-in ones (a config key and a log key: lowercase, digits, _)."""
    name = batch_type.name
    if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED:
        raise BatchmixError(f"batch type name {name!r} is not usable: use lowercase letters, digits and _ (not 'all'), e.g. 'pivot'")
    if name in _REGISTRY:
        raise BatchmixError(f"batch type {name!r} is already registered; unregister it first or pick another name")
    _REGISTRY[name] = batch_type
    return batch_type


def unregister(name: str) -> None:
    """Remove a registered type (the built-in three stay)."""
    if name in {t.name for t in _BUILTIN}:
        raise BatchmixError(f"batch type {name!r} is built in and cannot be unregistered")
    if _REGISTRY.pop(name, None) is None:
        raise BatchmixError(f"batch type {name!r} is not registered; registered: {', '.join(_REGISTRY)}")


@contextmanager
def registered(batch_type: BatchType) -> Iterator[BatchType]:
    """`with registered(BatchType(...)):` — the type exists inside the block only (for tests)."""
    register(batch_type)
    try:
        yield batch_type
    finally:
        unregister(batch_type.name)


def batch_type_names() -> tuple[str, ...]:
    """mono, cross, multi, then the registered types in registration order. Call it at use time."""
    return tuple(_REGISTRY)


def get_batch_type(name: str) -> BatchType:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BatchmixError(f"unknown batch type {name!r}; registered: {', '.join(_REGISTRY)}") from None
