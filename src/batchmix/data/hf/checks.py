"""Arrow column checks: text, language, list types and blank texts, told chunk by chunk in Arrow so
that a bad column is an error at load, not mid-training."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchmix.core.errors import BatchmixError


def _check_text_type(where: str, name: str, values: Any) -> None:
    import pyarrow as pa

    t = values.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
        raise BatchmixError(f"{where}: {name} holds {t}, not text; map data.hf.columns to a text column")


def _blank(values: Any) -> np.ndarray:
    """True where a text is empty or only whitespace (null: False). Chunk by chunk: the trimmed copy
    of a whole text column would cost as much memory as the texts."""
    import pyarrow.compute as pc

    out = [pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(chunk)), 0).fill_null(False).to_numpy(zero_copy_only=False)
           for chunk in values.chunks]
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def _check_lang_type(where: str, column: str, t: Any) -> None:
    import pyarrow as pa

    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise BatchmixError(f"{where}: lang column {column!r} holds {t}; it must be language codes")


def _parses_in_arrow(values: Any, ids: bool) -> bool:
    """True when every value is surely accepted by `parse_negatives` (texts) or, with `ids`, by
    `parse_answers` (ids): lists of strings (or ids: integers) without a null or blank item, the common
    case, told in Arrow; False means "parse them in Python" (which names the bad one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = values.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return False
    item = t.value_type
    text = pa.types.is_string(item) or pa.types.is_large_string(item)
    if not (text or (ids and pa.types.is_integer(item))):
        return False
    flat = pc.list_flatten(values)
    return flat.null_count == 0 and not (text and _blank(flat).any())


def _is_list_type(t: Any) -> bool:
    """An Arrow list column (or an all-null one): negatives, answers."""
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_null(t)


def _check_negatives_type(where: str, column: str, t: Any, struct: bool) -> None:
    import pyarrow as pa

    ok = all(_is_list_type(t.field(i).type) for i in range(t.num_fields)) if struct and pa.types.is_struct(t) else _is_list_type(t)
    if not ok:
        shape = "{lang: [texts]}" if struct else "a list of texts or {text, lang, id}"
        raise BatchmixError(f"{where}: negatives column {column!r} holds {t}, not {shape}; fix data.hf.columns.negatives")
