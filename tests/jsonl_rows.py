"""Test helper: write `TrainingGroups` as the JSONL training format that `batchmix.data.jsonl` reads
(kept here, not in the package: only the tests write training files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from batchmix.data.corpus import TrainingGroups


def write_training_jsonl(groups: TrainingGroups, path: str | os.PathLike) -> Path:
    """Write `groups` as training rows (by id, then language), e.g. to export a XQuAD-R train split."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid, pairs in zip(groups.ids, groups.pairs):
            for lang in sorted(pairs):
                pair = pairs[lang]
                row = {"id": qid, "lang": lang, "query": pair.query, "positive": pair.positive}
                if pair.context is not None:
                    row["context"] = pair.context
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
