"""Which source columns hold what: `data.hf.columns` resolved against the data's columns (long or
wide, templated or struct), before any row is read."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchmix.core.errors import BatchmixError
from batchmix.data.hf.options import LANG, HFOptions, _describe


@dataclass(frozen=True)
class _Field:
    """Where a text field lives for each language: `column` (templated with {lang}) or `key`."""

    column: str
    templated: bool  # wide: column name per language
    struct: bool  # wide: a {lang: value} column

    def locate(self, lang: str) -> tuple[str, str | None]:
        if self.templated:
            return self.column.replace(LANG, lang), None
        return self.column, (lang if self.struct else None)


@dataclass(frozen=True)
class _Plan:
    layout: str
    id: str | None
    lang: str | None
    query: _Field
    positive: _Field
    negatives: _Field | None
    languages: list[str]  # kept languages, sorted (long: filled in by the index pass)
    answers: str | None = None  # a list of ids per row: the other queries the row's positive(s) answer

    def columns(self) -> list[str]:
        """The source columns this plan reads (for `select_columns`)."""
        out = [c for c in (self.id, self.lang, self.answers) if c]
        for f in (self.query, self.positive, self.negatives):
            if f is not None:
                out += [f.locate(lang)[0] for lang in self.languages] if f.templated else [f.column]
        return list(dict.fromkeys(out))


def _template_langs(template: str, names: Sequence[str]) -> set[str]:
    head, _, tail = template.partition(LANG)
    pattern = re.compile(re.escape(head) + r"(.+)" + re.escape(tail) + r"\Z")
    return {m.group(1) for n in names if (m := pattern.match(n))}


def _struct_fields(schema: Any, column: str) -> list[str] | None:
    import pyarrow as pa

    if schema is None or column not in schema.names:
        return None
    t = schema.field(column).type
    return [t.field(i).name for i in range(t.num_fields)] if pa.types.is_struct(t) else None


def _plan(o: HFOptions, names: Sequence[str] | None, schema: Any) -> _Plan:
    """Resolve `data.hf.columns` against the data's column names (None: not known before streaming)."""
    c = o.columns
    where = _describe(o)

    def need(field: str, column: str) -> None:
        if names is not None and column not in names:
            raise BatchmixError(f"{where} has no column {column!r} for {field} (columns: {list(names)}); "
                                f"set data.hf.columns.{field}=<column>")

    answers = c["answers"]
    if answers:
        if LANG in answers:
            raise BatchmixError(f"data.hf.columns.answers={answers!r}: answers is one list of ids per row, not a {LANG} column")
        need("answers", answers)  # only when named: many QA sets have an `answers` column of answer spans
    if o.layout == "long":
        for field in ("id", "lang", "query", "positive"):
            need(field, c[field])
        neg = c["negatives"]
        if neg:
            need("negatives", neg)
        elif names is not None and "negatives" in names:
            neg = "negatives"
        elif names is None:
            neg = None  # streamed without features: only an explicitly named negatives column is read
        fields = {f: _Field(c[f], False, False) for f in ("query", "positive")}
        return _Plan("long", c["id"], c["lang"], fields["query"], fields["positive"],
                     _Field(neg, False, False) if neg else None, o.languages or [], answers or None)

    if c["id"]:
        need("id", c["id"])
    found: set[str] | None = None
    fields: dict[str, _Field | None] = {}
    for field in ("query", "positive", "negatives"):
        col = c[field]
        if not col:
            fields[field] = None
            continue
        if LANG in col:
            fields[field] = _Field(col, True, False)
            langs = _template_langs(col, names) if names is not None else None
        else:
            need(field, col)
            langs = _struct_fields(schema, col)
            if names is not None and langs is None:
                raise BatchmixError(f"{where}: column {col!r} ({field}) is not a {{lang: text}} struct; in data.hf.layout=wide "
                                    f"name one column per language, e.g. data.hf.columns.{field}='\"{field}_{LANG}\"'")
            fields[field] = _Field(col, False, True)
        if field != "negatives" and langs is not None:
            found = set(langs) if found is None else found & set(langs)
    if found is not None and not found:
        raise BatchmixError(f"{where}: no language has both a query ({c['query']!r}) and a positive ({c['positive']!r}); "
                            f"check data.hf.columns (columns: {list(names or [])})")
    if o.languages is not None:
        missing = [lang for lang in o.languages if found is not None and lang not in found]
        if missing:
            raise BatchmixError(f"data.hf.languages has {missing}, which {where} lacks (it has {sorted(found)}); "
                                f"drop them or fix data.hf.columns")
        languages = o.languages
    elif found is None:
        raise BatchmixError(f"{where}: the streamed dataset does not say its columns, so its languages are unknown; "
                            f"give data.hf.languages=[en, de, ...]")
    else:
        languages = sorted(found)
    neg = fields["negatives"]
    if neg is not None and neg.templated and names is not None:
        missing = [neg.locate(lang)[0] for lang in languages if neg.locate(lang)[0] not in names]
        if missing:
            raise BatchmixError(f"{where} has no negatives column {missing[0]!r} (data.hf.columns.negatives={c['negatives']!r}); "
                                f"set it to the right template or null")
    if neg is not None and neg.struct and schema is not None:
        absent = [lang for lang in languages if lang not in (_struct_fields(schema, neg.column) or [])]
        if absent:
            raise BatchmixError(f"{where}: negatives column {neg.column!r} has no field for {absent}; it must be {{lang: [texts]}}")
    return _Plan("wide", c["id"], None, fields["query"], fields["positive"], neg, languages, answers or None)
