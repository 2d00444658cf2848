"""A streamed `data.hf` read once into `$BATCHMIX_CACHE/hf/<key>.arrow`, reused while the options
(and local files) are unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from batchmix.core.cache import cache_root
from batchmix.core.errors import BatchmixError
from batchmix.data.hf.checks import _check_lang_type
from batchmix.data.hf.layout import _Plan
from batchmix.data.hf.open import _first_line
from batchmix.data.hf.options import HFOptions, _describe

CACHE_FORMAT = 1  # bump when the streamed cache file's content changes


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
