"""Where batchmix caches what it builds once (the embedded model, pretokenised pairs, streamed
Hugging Face data). Its own module, importing nothing heavy, so data loaders can use it without
loading transformers."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $BATCHMIX_CACHE, else $XDG_CACHE_HOME/batchmix, else ~/.cache/batchmix."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("BATCHMIX_CACHE"):
        return Path(os.environ["BATCHMIX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "batchmix"
