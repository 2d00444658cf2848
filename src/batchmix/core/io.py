"""Result files are written atomically (temp file in the same folder, then rename), so a killed
run never leaves a half-written metrics.json, history.csv, heatmap, TREC run or model export behind.
(Lightning checkpoints too: `batchmix.run.checkpointing.AtomicCheckpointIO` writes them with `atomic_open`.)"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside `path` (`mode` "w" or "wb"); it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_chunks(path: str | os.PathLike, chunks: Iterable[str]) -> Path:
    """For text too big to hold as one string (TREC runs)."""
    with atomic_open(path) as f:
        for chunk in chunks:
            f.write(chunk)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_chunks(path, [text])


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A staging folder beside `path` to write a folder of files into (a model export); it takes the
    place of `path` only if the block succeeds, so a killed export never leaves a half-written `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield staging
        for folder, _, files in os.walk(staging):
            for name in files:
                with open(Path(folder) / name, "rb") as f:
                    os.fsync(f.fileno())
        if path.exists():  # a folder cannot be renamed over a non-empty one: move the old one aside first
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
            os.replace(path, old / path.name)
            os.replace(staging, path)
            shutil.rmtree(old)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
