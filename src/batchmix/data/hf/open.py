"""Opening `data.hf` with `datasets`: a save_to_disk folder, a hub set or a builder over files,
each failure one line naming the option to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchmix.core.errors import BatchmixError
from batchmix.data.hf.options import HFOptions, _describe


def _is_saved_folder(path: str) -> bool:
    p = Path(path).expanduser()
    return p.is_dir() and (((p / "state.json").is_file() and (p / "dataset_info.json").is_file())
                           or (p / "dataset_dict.json").is_file())


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
