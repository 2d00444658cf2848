"""The generic training format: one JSON object per line, `{id, lang, query, positive[, negatives]}`.

Any parallel retrieval data (translated SQuAD, a LAReQA train split, in-house pairs) can be
trained on once it is in this shape: rows that share an `id` are translations of one another and
form one `TrainingGroups` group, which is what hybrid batching samples from.

`answers` (optional): the ids of other queries the row's positive also answers (a list of ids),
when several questions share one answer passage; rows of different ids with the same positive
text in one language are found without it. None of them is then scored as a negative of another
(losses/false_negatives.py).

`negatives` (optional): hard negative passages for the row, best first, each a string (in the
row's language) or `{"text": ..., "lang": ..., "id": ..., "answers": [...]}` (`lang` defaults to
the row's language; `id` and `answers` are the ids whose answer the passage is, if any, so that a
passage answering a query is never scored as its negative). `batchmix mine` writes this
format. Other fields (a paragraph `context`, say) are ignored: training pairs are (query, sentence)
pairs.
"""

from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path
from typing import Any

from batchmix.data.corpus import Negative, Pair, TrainingGroups
from batchmix.data.lareqa import check_text
from batchmix.core.errors import BatchmixError
from batchmix.core.io import atomic_open

REQUIRED_FIELDS = ("id", "lang", "query", "positive")


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        state = "missing" if key not in row else f"empty or not a string ({reprlib.repr(value)})"
        raise BatchmixError(f"{where}: field {key!r} is {state}; every row needs {', '.join(REQUIRED_FIELDS)}")
    check_text(where, f"field {key!r}", str(value))
    return str(value)


def parse_answers(value: object, where: str, field: str = "answers") -> tuple[str, ...]:
    """An `answers` field (absent or null: none): a list of ids (strings or integers)."""
    if value is None:
        return ()
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (str, int)) or str(v).strip() == "" for v in value):
        raise BatchmixError(f"{where}: field {field!r} must be a list of ids (strings or integers), got {reprlib.repr(value)}")
    ids = tuple(sorted({str(v) for v in value}))
    check_text(where, f"field {field!r}", *ids)  # ids are written back (the miner's output): UTF-8 only
    return ids


def parse_negatives(value: object, lang: str, where: str) -> tuple[Negative, ...]:
    """A row's `negatives` field (absent or null: none); see the module docstring for the shapes."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BatchmixError(f"{where}: field 'negatives' must be a list of texts or {{text, lang, id}} objects, got {reprlib.repr(value)}")
    out = []
    for k, item in enumerate(value):
        field = f"negatives[{k}]"
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise BatchmixError(f"{where}: {field} must be a non-empty text or an object with a 'text' string, got {reprlib.repr(item)}")
        answers = parse_answers(item.get("answers"), where, f"{field}.answers")
        neg_lang, neg_id = item.get("lang"), item.get("id")
        neg_lang = lang if neg_lang is None else neg_lang  # absent or null: the row's; not `or`: 0, "" or [] is no code
        if (not isinstance(neg_lang, str) or not neg_lang.strip()
                or (neg_id is not None and (isinstance(neg_id, bool) or not isinstance(neg_id, (str, int)) or not str(neg_id).strip()))):
            raise BatchmixError(f"{where}: {field} has lang={reprlib.repr(neg_lang)} id={reprlib.repr(neg_id)}; "
                                f"lang is a code (or absent: the row's), id a non-empty string, an integer, or absent")
        neg_id = None if neg_id is None else str(neg_id)
        check_text(where, field, item["text"], neg_lang, *(() if neg_id is None else (neg_id,)))
        out.append(Negative(text=item["text"], lang=neg_lang, id=neg_id, answers=answers))
    return tuple(out)


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
                negatives = parse_negatives(row.get("negatives"), lang, where)
                answers = parse_answers(row.get("answers"), where)
                if (qid, lang) in first_line:
                    raise BatchmixError(f"{where}: duplicate (id, lang) = ({qid!r}, {lang!r}), first on line "
                                        f"{first_line[(qid, lang)]}; keep one row per id and language")
                first_line[(qid, lang)] = line_no
                by_id.setdefault(qid, {})[lang] = Pair(query=query, positive=positive, negatives=negatives, answers=answers)
        except UnicodeDecodeError as e:
            raise BatchmixError(f"{path} is not UTF-8 ({e.reason}) after line {line_no}; re-encode it as UTF-8") from None
    if not by_id:
        raise BatchmixError(f"training file {path} has no rows; it needs one JSON object per line")
    ids = sorted(by_id)
    return TrainingGroups(ids=ids, pairs=[{lang: by_id[i][lang] for lang in sorted(by_id[i])} for i in ids])


def negative_row(negative: Negative) -> dict[str, Any]:
    row: dict[str, Any] = {"text": negative.text, "lang": negative.lang}
    if negative.id is not None:
        row["id"] = negative.id
    if set(negative.answers) - {negative.id}:
        row["answers"] = list(negative.answers)
    return row


def write_training_jsonl(groups: TrainingGroups, path: str | os.PathLike) -> Path:
    """Write `groups` as training rows (by id, then language), `negatives` where a pair has some:
    what `load_training_jsonl` reads back equal (the miner's output; an exported train split)."""
    path = Path(str(path)).expanduser()
    with atomic_open(path) as f:  # never a half-written file under the final name, nor a stray temp file
        for qid, pairs in zip(groups.ids, groups.pairs):
            for lang in sorted(pairs):
                pair = pairs[lang]
                row: dict = {"id": qid, "lang": lang, "query": pair.query, "positive": pair.positive}
                if pair.answers:
                    row["answers"] = list(pair.answers)
                if pair.negatives:
                    row["negatives"] = [negative_row(n) for n in pair.negatives]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
