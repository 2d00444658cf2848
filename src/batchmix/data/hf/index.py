"""The index over the id (and lang) columns: sorted ids, each group's rows and languages, as numpy
arrays (the texts stay in the mapped table)."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchmix.core.errors import BatchmixError
from batchmix.data.hf.checks import _blank, _check_lang_type, _check_text_type
from batchmix.data.hf.layout import _Field, _Plan


def _values(table: Any, field: _Field, lang: str) -> Any:
    import pyarrow.compute as pc

    column, key = field.locate(lang)
    values = table.column(column)
    return pc.struct_field(values, key) if key is not None else values


def _ids(table: Any, plan: _Plan, where: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if plan.id is None:
        return pc.cast(pa.chunked_array([pa.array(np.arange(table.num_rows))]), pa.large_string())
    ids = table.column(plan.id)
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type) or pa.types.is_integer(ids.type) or pa.types.is_null(ids.type)):
        raise BatchmixError(f"{where}: id column {plan.id!r} holds {ids.type}; ids must be strings or integers")
    if ids.null_count:
        row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
        raise BatchmixError(f"{where}: row {row} has no id (column {plan.id!r} is null); every row needs an id")
    return pc.cast(ids, pa.large_string())


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _build_index(table: Any, plan: _Plan, where: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(sorted ids, group offsets, source row per entry, language code per entry, languages)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    ids = _ids(table, plan, where).combine_chunks()
    if plan.layout == "long":
        langs = table.column(plan.lang)
        _check_lang_type(where, plan.lang, langs.type)
        langs = pc.cast(langs, pa.large_string()).combine_chunks()
        keep = np.ones(n, dtype=bool)
        if plan.languages:
            keep = pc.is_in(langs, value_set=pa.array(plan.languages, pa.large_string())).fill_null(False).to_numpy(zero_copy_only=False)
        null_lang = langs.is_null().to_numpy(zero_copy_only=False) & keep
        if null_lang.any():
            raise BatchmixError(f"{where}: row {_first(null_lang)} has no lang (column {plan.lang!r} is null); every row needs one")
        for name, field in (("query", plan.query), ("positive", plan.positive)):
            values = table.column(field.column)
            _check_text_type(where, f"column {field.column!r} ({name})", values)
            bad = (values.is_null().to_numpy(zero_copy_only=False) | _blank(values)) & keep
            if bad.any():
                r = _first(bad)
                raise BatchmixError(f"{where}: row {r} (id {ids[r].as_py()!r}, lang {langs[r].as_py()!r}) has an empty {name} "
                                    f"(column {field.column!r}); drop or fill such rows")
        rows = np.flatnonzero(keep)
        if rows.size == 0:
            raise BatchmixError(f"{where} has no rows for data.hf.languages={plan.languages} (max_rows applied first); "
                                f"check the filters")
        sub = pa.table({"id": ids.take(rows), "lang": langs.take(rows), "row": pa.array(rows)})
        sub = sub.sort_by([("id", "ascending"), ("lang", "ascending")])
        sid, slang = sub.column("id").combine_chunks(), sub.column("lang").combine_chunks()
        rows = sub.column("row").to_numpy()
        languages = sorted(pc.unique(slang).to_pylist())
        codes = pc.index_in(slang, value_set=pa.array(languages, pa.large_string())).to_numpy(zero_copy_only=False).astype(np.int16)
        m = len(rows)
        same_id = np.zeros(m, dtype=bool)
        if m > 1:
            same_id[1:] = pc.equal(sid.slice(1), sid.slice(0, m - 1)).to_numpy(zero_copy_only=False)
        dup = same_id & np.r_[False, codes[1:] == codes[:-1]]
        if dup.any():
            k = _first(dup)
            raise BatchmixError(f"{where}: duplicate (id, lang) = ({sid[k].as_py()!r}, {slang[k].as_py()!r}) in rows "
                                f"{int(rows[k - 1])} and {int(rows[k])}; keep one row per id and language")
        starts = np.flatnonzero(~same_id)
        offsets = np.r_[starts, m].astype(np.int64)
        return sid.take(pa.array(starts)).to_pylist(), offsets, rows.astype(np.int64), codes, languages

    # wide: one row per id; a language is present where its query and positive are both non-null
    languages = plan.languages
    present = np.zeros((n, len(languages)), dtype=bool)
    for j, lang in enumerate(languages):
        q, p = _values(table, plan.query, lang), _values(table, plan.positive, lang)
        qcol, pcol = plan.query.locate(lang), plan.positive.locate(lang)
        _check_text_type(where, f"query {qcol}", q)
        _check_text_type(where, f"positive {pcol}", p)
        qn, pn = q.is_null().to_numpy(zero_copy_only=False), p.is_null().to_numpy(zero_copy_only=False)
        if (qn != pn).any():
            r = _first(qn != pn)
            has, lacks = ("positive", "query") if qn[r] else ("query", "positive")
            raise BatchmixError(f"{where}: row {r} (id {ids[r].as_py()!r}) has a {has} in {lang!r} but no {lacks}; "
                                f"give both or neither")
        for name, values in (("query", q), ("positive", p)):
            blank = _blank(values)
            if blank.any():
                r = _first(blank)
                raise BatchmixError(f"{where}: row {r} (id {ids[r].as_py()!r}) has an empty {name} in {lang!r}; "
                                    f"use null for a missing translation, or fill it")
        present[:, j] = ~qn
    order = np.asarray(pc.sort_indices(ids), dtype=np.int64)
    sid = ids.take(pa.array(order))
    if n > 1:
        same = pc.equal(sid.slice(1), sid.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        if same.any():
            k = _first(same)
            raise BatchmixError(f"{where}: id {sid[k].as_py()!r} is in rows {int(order[k])} and {int(order[k + 1])}; "
                                f"data.hf.layout=wide needs one row per id (or use layout=long)")
    order = order[present[order].any(axis=1)]  # an id with no language kept has no pair
    if order.size == 0:
        raise BatchmixError(f"{where} has no row with a query and a positive in {languages}; check data.hf.languages / columns")
    entry_row, entry_lang = np.nonzero(present[order])
    offsets = np.r_[0, np.cumsum(present[order].sum(axis=1))].astype(np.int64)
    return (ids.take(pa.array(order)).to_pylist(), offsets, order[entry_row].astype(np.int64),
            entry_lang.astype(np.int16), list(languages))
