"""Shared fixtures: no network, the real XQuAD-R folder (skip if absent), tiny model configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from batchmix.core.errors import BatchmixError  # noqa: E402
import batchmix.run  # noqa: E402,F401  registers the resolvers conf/ uses, as every entry point does


@pytest.fixture(scope="session")
def xquad_root() -> Path:
    from batchmix.data.root import resolve_data_root

    try:
        return resolve_data_root(None, "xquad-r")
    except BatchmixError as err:
        pytest.skip(f"XQuAD-R not available: {err}")


@pytest.fixture
def datasets_offline(monkeypatch, tmp_path):
    """`datasets` with no network and its cache under the test's folder. It reads the offline
    switches at import time, so its config is patched as well as the environment."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
