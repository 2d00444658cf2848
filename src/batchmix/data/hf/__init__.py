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
from collections.abc import Mapping
from typing import Any

from batchmix.core.compat import has_indices_mapping
from batchmix.core.errors import BatchmixError
from batchmix.data.corpus import TrainingGroups
from batchmix.data.hf.cache import _materialize
from batchmix.data.hf.checks import _check_negatives_type, _is_list_type
from batchmix.data.hf.index import _build_index
from batchmix.data.hf.layout import _Plan, _plan
from batchmix.data.hf.open import _open
from batchmix.data.hf.options import HFOptions, _describe, check_hf_options
from batchmix.data.hf.views import HFPairs


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
