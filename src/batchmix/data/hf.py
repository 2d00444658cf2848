"""`data.source=hf`: training pairs from a Hugging Face dataset (hub, packaged builder, or folder).

The `data.hf` block names the data as `datasets.load_dataset(path, name, split=, data_files=,
streaming=)` would. A folder written by `save_to_disk` is detected by its `state.json` +
`dataset_info.json` (or `dataset_dict.json`) and opened with `datasets.load_from_disk`, because
`load_dataset` refuses such folders (datasets 5.2: "use `load_from_disk` instead"); a saved
`Dataset` is the split itself, a saved `DatasetDict` gives `split`, and as it is memory-mapped
already `streaming` is moot there. Hub sets that still need a loading script (`x.py`, e.g.
unicamp-dl/mmarco) fail on datasets >= 4 with a one-line error: export them to parquet.

Two layouts:

* `long`: one row per (id, language) with columns id, lang, query, positive[, negatives][, answers],
  as the JSONL format (data/jsonl.py); `negatives` is read when the row has such a column (or is
  named); `answers` when named (`data.hf.columns.answers`: many QA sets have an `answers` column of
  answer spans, which is not this).
* `wide`: one row per id, each text per language, in one of two forms per field: a templated column
  name (`columns.query: "query_{lang}"`: one column per language, languages found in the column
  names) or a `{lang: text}` column (a `Translation` feature or any struct; languages are its
  fields). A null text means the id lacks that language. Wide negatives are per language too:
  `"negatives_{lang}"` (a list per language) or a struct of lists `{lang: [...]}`; their items are
  the JSONL shapes (a text in the pair's language, or `{text, lang, id, answers}`). A named
  `answers` column is one list of ids per row (the other queries the id's positives answer). `columns.id: null` uses
  the row number as id (translation sets often have none).

Memory: up front, only the id (and lang) columns become an index (sorted ids, and numpy arrays:
group -> its rows and languages; ~110 MB for 1M ids x 3 languages), and the texts are scanned chunk
by chunk in Arrow for nulls and blanks, the negatives and answers parsed once (in Arrow when they
are lists of texts or ids; objects in Python, ~1 s per 100k rows): an error now, not mid-training,
and a failed load leaves no streamed copy in the cache. Texts stay in the
memory-mapped Arrow table: `TrainingGroups.pairs` is a read-only sequence of mappings that
builds each `Pair` when it is read. A streamed set is read once (first `max_rows` rows, only the
mapped columns and kept languages) into `$BATCHMIX_CACHE/hf/<key>.arrow` and reused while the
options (and local files) are unchanged; delete that file to stream again.
"""

from __future__ import annotations

import contextlib
import os
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from batchmix.core.cache import cache_root
from batchmix.core.compat import has_indices_mapping
from batchmix.data.corpus import Pair, TrainingGroups
from batchmix.data.jsonl import parse_answers, parse_negatives
from batchmix.core.errors import BatchmixError

LAYOUTS = ("long", "wide")
FIELDS = ("id", "lang", "query", "positive", "negatives", "answers")
DEFAULTS: dict[str, Any] = {"path": None, "name": None, "split": "train", "data_files": None, "streaming": False,
                            "layout": "long", "columns": {}, "languages": None, "max_rows": None}
LANG = "{lang}"
CACHE_FORMAT = 1  # bump when the streamed cache file's content changes


@dataclass(frozen=True)
class HFOptions:
    path: str
    name: str | None
    split: str
    data_files: Any
    streaming: bool
    layout: str
    columns: dict[str, str | None]
    languages: list[str] | None
    max_rows: int | None


def _plain(value: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def check_hf_options(hf: Mapping[str, Any] | None) -> HFOptions:
    """The `data.hf` options that need no reading (pre-flight and loader share it)."""
    hf = _plain(hf) or {}
    if not isinstance(hf, Mapping):
        raise BatchmixError(f"data.hf={reprlib.repr(hf)} must be a block of options (path, layout, columns, ...); see conf/data/xquad_r.yaml")
    unknown = sorted(set(hf) - set(DEFAULTS))
    if unknown:
        raise BatchmixError(f"data.hf has unknown option(s) {unknown}; the options are {list(DEFAULTS)}")
    o = {**DEFAULTS, **hf}
    if not isinstance(o["path"], str) or not o["path"].strip():
        raise BatchmixError(f"data.hf.path={o['path']!r} must name the data: a hub dataset (user/name), a builder with "
                            f"data_files (data.hf.path=parquet data.hf.data_files=pairs.parquet), or a folder")
    if o["layout"] not in LAYOUTS:
        raise BatchmixError(f"data.hf.layout={o['layout']!r} is not one of {list(LAYOUTS)}: long (one row per id and language) "
                            f"or wide (one row per id, texts per language)")
    if not isinstance(o["streaming"], bool):
        raise BatchmixError(f"data.hf.streaming={o['streaming']!r} must be true or false")
    m = o["max_rows"]
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
        raise BatchmixError(f"data.hf.max_rows={m!r} must be a positive integer (the first N rows) or null (all)")
    if not isinstance(o["split"], str) or not o["split"]:
        raise BatchmixError(f"data.hf.split={o['split']!r} must be a split name, e.g. data.hf.split=train")
    if o["name"] is not None and not isinstance(o["name"], str):
        raise BatchmixError(f"data.hf.name={o['name']!r} must be the dataset's config name or null")
    files = o["data_files"]
    if files is not None and not (isinstance(files, str) or (isinstance(files, (list, dict)) and files)):
        raise BatchmixError(f"data.hf.data_files={reprlib.repr(files)} must be a path, a list of paths, {{split: paths}} or null")
    columns = o["columns"] or {}
    if not isinstance(columns, Mapping) or set(columns) - set(FIELDS):
        bad = sorted(set(columns) - set(FIELDS)) if isinstance(columns, Mapping) else columns
        raise BatchmixError(f"data.hf.columns has {reprlib.repr(bad)}; it maps batchmix fields {list(FIELDS)} to column names")
    columns = {**{f: f for f in FIELDS[:4]}, "negatives": None, "answers": None, **columns}
    for field, col in columns.items():
        if col is not None and (not isinstance(col, str) or not col):
            raise BatchmixError(f"data.hf.columns.{field}={col!r} must be a column name (or null)")
        if col and LANG in col and (o["layout"] != "wide" or field in ("id", "lang")):
            raise BatchmixError(f"data.hf.columns.{field}={col!r}: a {LANG} column name is for data.hf.layout=wide query, "
                                f"positive or negatives only")
    for field in ("query", "positive") + (("id", "lang") if o["layout"] == "long" else ()):
        if not columns[field]:
            raise BatchmixError(f"data.hf.columns.{field} is null; data.hf.layout={o['layout']} needs a {field} column")
    langs = o["languages"]
    langs = [langs] if isinstance(langs, str) else langs
    if langs is not None and (not isinstance(langs, list) or not langs or not all(isinstance(x, str) and x for x in langs)):
        raise BatchmixError(f"data.hf.languages={reprlib.repr(langs)} must be null (all found) or a list of codes, e.g. [en, de]")
    return HFOptions(path=o["path"], name=o["name"], split=o["split"], data_files=files, streaming=o["streaming"],
                     layout=o["layout"], columns=columns, languages=None if langs is None else sorted(set(langs)),
                     max_rows=m)


# --- opening the data -------------------------------------------------------------------------


def _is_saved_folder(path: str) -> bool:
    p = Path(path).expanduser()
    return p.is_dir() and (((p / "state.json").is_file() and (p / "dataset_info.json").is_file())
                           or (p / "dataset_dict.json").is_file())


def _describe(o: HFOptions) -> str:
    extra = f" data_files={o.data_files!r}" if o.data_files else ""
    return f"data.hf.path={o.path!r}{extra}"


def _open(o: HFOptions) -> Any:
    """A `Dataset` (memory-mapped) or, with streaming, an `IterableDataset`, for `o.split`."""
    import datasets  # heavy; only this source needs it

    from batchmix.data.hub import _network_errors

    try:
        if _is_saved_folder(o.path):
            ds = datasets.load_from_disk(str(Path(o.path).expanduser()))
            if isinstance(ds, datasets.DatasetDict):
                if o.split not in ds:
                    raise BatchmixError(f"data.hf.split={o.split!r} is not in the saved dataset {o.path}; it has {sorted(ds)}")
                ds = ds[o.split]
            return ds
        return datasets.load_dataset(o.path, o.name, split=o.split, data_files=o.data_files, streaming=o.streaming)
    except BatchmixError:
        raise
    except (StopIteration, IndexError) as e:  # datasets 5.2 on no rows: the json builder's peek, load_from_disk of a 0-row save
        raise BatchmixError(f"{_describe(o)} has no rows (datasets: {type(e).__name__} opening it); give a dataset with rows "
                            f"(check data.hf.path / data.hf.data_files)") from None
    except FileNotFoundError as e:
        raise BatchmixError(f"{_describe(o)} was not found ({_first_line(e)}); check the path, data_files or hub name") from None
    except datasets.exceptions.DatasetGenerationError as e:
        raise BatchmixError(f"{_describe(o)} could not be read ({_first_line(e.__cause__ or e)}); check the builder "
                            f"(parquet, json, csv, arrow) matches the files") from None
    except ValueError as e:
        raise BatchmixError(f"{_describe(o)} name={o.name!r} split={o.split!r}: {_first_line(e)}; fix data.hf.name / data.hf.split") from None
    except RuntimeError as e:  # datasets >= 4: "Dataset scripts are no longer supported, but found x.py"
        raise BatchmixError(f"{_describe(o)} cannot be loaded by datasets {datasets.__version__} ({_first_line(e)}); "
                            f"export its rows to parquet and use data.hf.path=parquet data.hf.data_files=<files>") from None
    except _network_errors() as e:
        raise BatchmixError(f"the hub is unreachable ({_describe(o)}: {type(e).__name__}: {_first_line(e)}); without network "
                            f"use a local copy: data.hf.path=parquet data.hf.data_files=<files> (or a save_to_disk folder)") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --- which columns hold what ------------------------------------------------------------------


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


# --- streaming into a local Arrow file --------------------------------------------------------


def _cache_key(o: HFOptions, plan: _Plan) -> str:
    from datasets.fingerprint import Hasher

    stats = []
    files = o.data_files if isinstance(o.data_files, list) else list(o.data_files.values()) if isinstance(o.data_files, dict) else [o.data_files]
    for f in [o.path] + [x for v in files for x in (v if isinstance(v, list) else [v]) if isinstance(x, str)]:
        p = Path(f).expanduser()
        if p.is_file():
            st = p.stat()
            stats.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return Hasher.hash([CACHE_FORMAT, o, plan.columns(), plan.languages if plan.layout == "wide" else o.languages, stats])


def _materialize(stream: Any, o: HFOptions, plan: _Plan) -> tuple[Any, Path | None]:
    """Stream the first `max_rows` rows (mapped columns, kept languages) once into a cached Arrow file:
    (the dataset, the file's path if this call wrote it, None if it was cached already)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import Dataset

    from batchmix.data.hub import _network_errors

    path = cache_root() / "hf" / f"{_cache_key(o, plan)}.arrow"
    if path.is_file():
        return Dataset.from_file(str(path)), None
    path.parent.mkdir(parents=True, exist_ok=True)
    it = stream.select_columns(plan.columns()) if stream.column_names is not None else stream
    if o.max_rows is not None:
        it = it.take(o.max_rows)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer, schema, rows, done = None, None, 0, False
    try:
        for batch in it.with_format("arrow").iter(batch_size=10_000):
            if stream.column_names is None:
                missing = [c for c in plan.columns() if c not in batch.column_names]
                if missing:
                    raise BatchmixError(f"{_describe(o)} has no column {missing[0]!r} (columns: {batch.column_names}); fix data.hf.columns")
                batch = batch.select(plan.columns())
            if plan.layout == "long" and o.languages:
                _check_lang_type(_describe(o), plan.lang, batch.schema.field(plan.lang).type)  # is_in of codes in ints: ArrowTypeError
                batch = batch.filter(pc.is_in(batch[plan.lang], value_set=pa.array(o.languages)))
            if writer is None:
                schema = batch.schema
                writer = pa.ipc.new_stream(str(tmp), schema)
            writer.write_table(batch if batch.schema == schema else batch.cast(schema))
            rows += batch.num_rows
        done = rows > 0
    except BatchmixError:
        raise
    except _network_errors() as e:
        raise BatchmixError(f"the hub is unreachable while streaming {_describe(o)} ({type(e).__name__}: {_first_line(e)}); "
                            f"retry, or use a local copy (data.hf.path=parquet data.hf.data_files=<files>)") from None
    finally:
        if writer is not None:
            writer.close()
        if not done:
            tmp.unlink(missing_ok=True)
    if not done:
        raise BatchmixError(f"{_describe(o)} streamed no rows (data.hf.max_rows={o.max_rows}, data.hf.languages={o.languages}); "
                            f"check the split and the filters")
    os.replace(tmp, path)  # never a half-written file under the final name
    return Dataset.from_file(str(path)), path


# --- the index --------------------------------------------------------------------------------


def _values(table: Any, field: _Field, lang: str) -> Any:
    import pyarrow.compute as pc

    column, key = field.locate(lang)
    values = table.column(column)
    return pc.struct_field(values, key) if key is not None else values


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


def _check_lang_type(where: str, column: str, t: Any) -> None:
    import pyarrow as pa

    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise BatchmixError(f"{where}: lang column {column!r} holds {t}; it must be language codes")


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


# --- the lazy pairs ---------------------------------------------------------------------------


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
        if isinstance(g, slice):
            return [self[i] for i in range(len(self))[g]]
        n = len(self)
        if g < 0:
            g += n
        if not 0 <= g < n:
            raise IndexError(f"group {g} out of range ({n} groups)")
        return HFGroup(self, int(g))

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


# --- entry point ------------------------------------------------------------------------------


def load_hf_training(hf: Mapping[str, Any]) -> TrainingGroups:
    """Training groups from the `data.hf` block (module docstring): ids sorted, languages sorted
    within a group, texts read lazily from the memory-mapped Arrow data."""
    import datasets

    o = check_hf_options(hf)
    ds = _open(o)
    streamed = None
    if isinstance(ds, datasets.IterableDataset):
        features = ds.features
        names = list(features) if features is not None else None
        plan = _plan(o, names, features.arrow_schema if features is not None else None)
        ds, streamed = _materialize(ds, o, plan)
    elif o.max_rows is not None and o.max_rows < len(ds):
        ds = ds.select(range(o.max_rows))  # contiguous: a slice of the mapped table, no copy
    try:
        return _training_groups(ds, o)
    except BatchmixError:
        if streamed is not None:  # a copy of rows that do not load is no cache: nothing stays behind a failed load
            with contextlib.suppress(OSError):
                streamed.unlink(missing_ok=True)
        raise


def _training_groups(ds: Any, o: HFOptions) -> TrainingGroups:
    """The checks and the index over a (memory-mapped) `Dataset` of the source's rows."""
    where = _describe(o)
    table = ds.data.table
    plan = _plan(o, table.column_names, table.schema)
    ds = ds.select_columns(plan.columns())
    if has_indices_mapping(ds):  # not from our own select (contiguous), but a folder may carry one
        ds = ds.flatten_indices()
    table = ds.data.table
    if plan.negatives is not None:
        for col in {plan.negatives.locate(lang)[0] for lang in plan.languages} if plan.layout == "wide" else {plan.negatives.column}:
            _check_negatives_type(where, col, table.schema.field(col).type, plan.negatives.struct)
    if plan.answers is not None:
        t = table.schema.field(plan.answers).type
        if not _is_list_type(t):
            raise BatchmixError(f"{where}: answers column {plan.answers!r} holds {t}, not a list of ids; fix data.hf.columns.answers")
    if table.num_rows == 0:
        raise BatchmixError(f"{where} split {o.split!r} has no rows (data.hf.max_rows={o.max_rows}, data.hf.languages={o.languages}); "
                            f"check data.hf.split, data_files and the filters")
    ids, offsets, rows, codes, languages = _build_index(table, plan, where)
    plan = _Plan(plan.layout, plan.id, plan.lang, plan.query, plan.positive, plan.negatives, languages, plan.answers)
    pairs = HFPairs(ds, plan, offsets, rows, codes, languages, where)
    pairs.check_lists()
    return TrainingGroups(ids=ids, pairs=pairs)  # type: ignore[arg-type]


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
