"""The lazy pairs: read-only views over the memory-mapped Arrow table that build each `Pair` when it
is read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Iterator

import numpy as np

from batchmix.data.corpus import Pair
from batchmix.data.hf.checks import _parses_in_arrow
from batchmix.data.hf.layout import _Field, _Plan
from batchmix.data.jsonl import parse_answers, parse_negatives


class HFPairs(Sequence):
    """`TrainingGroups.pairs` over a memory-mapped Arrow table: `pairs[g]` is a read-only mapping
    language -> `Pair`, read from the table when a pair is looked up (texts are never all loaded).
    Pickles as the dataset's file path plus the index, so DataLoader workers reopen the mapping."""

    def __init__(self, dataset: Any, plan: _Plan, offsets: np.ndarray, rows: np.ndarray, codes: np.ndarray,
                 languages: list[str], where: str) -> None:
        self.dataset, self.plan, self.where = dataset, plan, where
        self.offsets, self.rows, self.codes, self.languages = offsets, rows, codes, languages
        self._columns: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_columns": {}}  # the Arrow columns are re-read from the mapped file

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, g: int | slice) -> Any:
        groups = range(len(self))  # indexes as a list does: negative from the end, IndexError past it
        return [HFGroup(self, i) for i in groups[g]] if isinstance(g, slice) else HFGroup(self, groups[g])

    def __iter__(self) -> Iterator["HFGroup"]:
        return (HFGroup(self, g) for g in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HFPairs({len(self)} groups, {len(self.rows)} pairs, languages {self.languages})"

    def _column(self, name: str) -> Any:
        if name not in self._columns:
            self._columns[name] = self.dataset.data.table.column(name)
        return self._columns[name]

    def _value(self, field: _Field, row: int, lang: str) -> Any:
        column, key = field.locate(lang)
        scalar = self._column(column)[row]
        return (scalar[key] if key is not None and scalar.is_valid else scalar).as_py()

    def check_lists(self, chunk: int = 10_000) -> None:
        """Parse every kept pair's negatives and answers once, `chunk` rows at a time, with the parsers
        `pair` uses: a null item, a blank text, an id of the wrong type is an error now, not at the
        first batch (or the answers index) that reads it; and what passes here parses then."""
        import pyarrow as pa
        import pyarrow.compute as pc

        plan = self.plan
        if plan.negatives is not None:
            for j, lang in enumerate(self.languages):
                column, key = plan.negatives.locate(lang)
                rows = self.rows[self.codes == j]
                for start in range(0, len(rows), chunk):
                    part = rows[start : start + chunk]
                    values = self._column(column).take(pa.array(part))
                    values = pc.struct_field(values, key) if key is not None else values
                    if _parses_in_arrow(values, ids=False):
                        continue
                    for row, value in zip(part.tolist(), values.to_pylist()):
                        parse_negatives(value, lang, f"{self.where} row {row} ({lang}, column {column!r})")
        if plan.answers is not None:
            rows = np.unique(self.rows)
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                values = self._column(plan.answers).take(pa.array(part))
                if _parses_in_arrow(values, ids=True):
                    continue
                for row, value in zip(part.tolist(), values.to_pylist()):
                    parse_answers(value, f"{self.where} row {row} (column {plan.answers!r})")

    def pair(self, row: int, lang: str) -> Pair:
        plan = self.plan
        query, positive = self._value(plan.query, row, lang), self._value(plan.positive, row, lang)
        negatives, answers, where = (), (), f"{self.where} row {row} ({lang})"
        if plan.negatives is not None:
            negatives = parse_negatives(self._value(plan.negatives, row, lang), lang, where)
        if plan.answers is not None:
            answers = parse_answers(self._column(plan.answers)[row].as_py(), where)
        return Pair(query=query, positive=positive, negatives=negatives, answers=answers)


class HFGroup(Mapping):
    """One id's pairs: language -> `Pair`, languages in sorted order."""

    __slots__ = ("_pairs", "_g")

    def __init__(self, pairs: HFPairs, g: int) -> None:
        self._pairs, self._g = pairs, g

    def _span(self) -> range:
        return range(int(self._pairs.offsets[self._g]), int(self._pairs.offsets[self._g + 1]))

    def __getitem__(self, lang: str) -> Pair:
        p = self._pairs
        for k in self._span():
            if p.languages[p.codes[k]] == lang:
                return p.pair(int(p.rows[k]), lang)
        raise KeyError(lang)

    def __contains__(self, lang: object) -> bool:
        p = self._pairs
        return any(p.languages[p.codes[k]] == lang for k in self._span())

    def __iter__(self) -> Iterator[str]:
        p = self._pairs
        return (p.languages[p.codes[k]] for k in self._span())

    def __len__(self) -> int:
        return len(self._span())

    def __repr__(self) -> str:
        return f"HFGroup({dict(self)!r})"
