"""The `data.hf` block checked without reading any data: pre-flight and the loader share it."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from batchmix.core.errors import BatchmixError

LAYOUTS = ("long", "wide")
FIELDS = ("id", "lang", "query", "positive", "negatives", "answers")
DEFAULTS: dict[str, Any] = {"path": None, "name": None, "split": "train", "data_files": None, "streaming": False,
                            "layout": "long", "columns": {}, "languages": None, "max_rows": None}
LANG = "{lang}"


@dataclass(frozen=True)
class HFOptions:
    __module__ = "batchmix.data.hf"  # the streamed cache key (cache.py) hashes the class by this path: kept from before the split
    path: str
    name: str | None
    split: str
    data_files: Any
    streaming: bool
    layout: str
    columns: dict[str, str | None]
    languages: list[str] | None
    max_rows: int | None


def check_hf_options(hf: Mapping[str, Any] | None) -> HFOptions:
    """The `data.hf` options that need no reading (pre-flight and loader share it)."""
    hf = (OmegaConf.to_container(hf, resolve=True) if OmegaConf.is_config(hf) else hf) or {}
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


def _describe(o: HFOptions) -> str:
    extra = f" data_files={o.data_files!r}" if o.data_files else ""
    return f"data.hf.path={o.path!r}{extra}"
