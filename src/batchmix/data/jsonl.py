"""The generic training format: one JSON object per line, `{id, lang, query, positive[, context]}`.

Any parallel retrieval data (translated SQuAD, a LAReQA train split, in-house pairs) can be
trained on once it is in this shape: rows that share an `id` are translations of one another and
form one `TrainingGroups` group, which is what hybrid batching samples from.
"""

from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path

from batchmix.data.corpus import Pair, TrainingGroups
from batchmix.data.lareqa import check_text
from batchmix.errors import BatchmixError

REQUIRED_FIELDS = ("id", "lang", "query", "positive")


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        state = "missing" if key not in row else f"empty or not a string ({reprlib.repr(value)})"
        raise BatchmixError(f"{where}: field {key!r} is {state}; every row needs {', '.join(REQUIRED_FIELDS)}")
    check_text(where, f"field {key!r}", str(value))
    return str(value)


def load_training_jsonl(path: str | os.PathLike) -> TrainingGroups:
    """Read training rows and group them by `id` (ids sorted; languages sorted within a group)."""
    path = Path(str(path)).expanduser()
    by_id: dict[str, dict[str, Pair]] = {}
    first_line: dict[tuple[str, str], int] = {}
    line_no = 0
    try:
        f = open(path, encoding="utf-8-sig")  # -sig: a leading byte-order mark is skipped, not a parse error
    except OSError as e:
        raise BatchmixError(f"cannot read training file {path} ({e.strerror}); check data.train_file") from None
    with f:
        try:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BatchmixError(
                        f"{where}: not a JSON object (column {e.colno}: {e.msg}); each line must be one JSON row"
                    ) from None
                except (ValueError, RecursionError) as e:  # a number of > 4300 digits, or absurdly deep nesting
                    raise BatchmixError(f"{where}: cannot be parsed ({str(e).splitlines()[0]}); each line must be one JSON row") from None
                if not isinstance(row, dict):
                    raise BatchmixError(f"{where}: a JSON {type(row).__name__}, not an object; each line must be one row")
                qid, lang, query, positive = (_text(row, key, where) for key in REQUIRED_FIELDS)
                context = row.get("context")
                if context is not None and not isinstance(context, str):
                    raise BatchmixError(f"{where}: field 'context' must be a string or absent, got {reprlib.repr(context)}")
                if context is not None:
                    check_text(where, "field 'context'", context)
                if (qid, lang) in first_line:
                    raise BatchmixError(
                        f"{where}: duplicate (id, lang) = ({qid!r}, {lang!r}), first on line "
                        f"{first_line[(qid, lang)]}; keep one row per id and language"
                    )
                first_line[(qid, lang)] = line_no
                by_id.setdefault(qid, {})[lang] = Pair(query=query, positive=positive, context=context)
        except UnicodeDecodeError as e:
            raise BatchmixError(f"{path} is not UTF-8 ({e.reason}) after line {line_no}; re-encode it as UTF-8") from None
    if not by_id:
        raise BatchmixError(f"training file {path} has no rows; it needs one JSON object per line")
    ids = sorted(by_id)
    return TrainingGroups(ids=ids, pairs=[{lang: by_id[i][lang] for lang in sorted(by_id[i])} for i in ids])
