"""Test helper: the package's JSONL writer, under the name the tests have always imported."""

from __future__ import annotations

from batchmix.data.jsonl import write_training_jsonl

__all__ = ["write_training_jsonl"]
