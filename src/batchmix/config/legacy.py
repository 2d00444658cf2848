"""Config keys added (or renamed) after run folders were written, each with its *legacy* value:
what a run made before the key existed did. A key of a schema declares it in its field
(`legacy(...)` in batchmix/config/schema.py); a key of an open node (`loss.mask`: each loss takes
its own options, so no schema field carries it) in `OPEN_KEYS` below.

Why: a rerun resumes a run folder only if its config is the same run (batchmix.run.resume). A saved
`config.yaml` that lacks a key is read as if it held the legacy value, so an old run folder
resumes, and resumes with the behaviour it had, even when the key's new default differs (e.g.
`loss.mask`: `answers` now, `ids` before it existed). A renamed key is read under its new name
with its value translated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchmix.config.schema import TrainConfig, leaves


@dataclass(frozen=True)
class AddedKey:
    key: str
    legacy: Any
    renamed_from: tuple[str, Mapping[Any, Any]] | None = None  # (old key, old value -> new value)


# Runs made before `loss.mask` existed masked by parallel id only (loss.mask_translations: true): they resume with that.
OPEN_KEYS = (AddedKey("loss.mask", "ids", renamed_from=("loss.mask_translations", {True: "ids", False: "none"})),)


def added_keys() -> dict[str, AddedKey]:
    """Every declaration: the schema's fields' and the open nodes'."""
    declared = {key: AddedKey(key, f.metadata["legacy"]) for key, _, f in leaves(TrainConfig) if "legacy" in f.metadata}
    return {**declared, **{entry.key: entry for entry in OPEN_KEYS}}


def upgrade(saved: Mapping[str, Any], present: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A saved config (flat dotted keys) as today's code reads it, for the keys `present` in today's
    config: a renamed key under its new name, a missing added key at its legacy value. Returns the
    upgraded mapping and the keys it derived so (absent from the file under their names)."""
    out, derived, entries = dict(saved), [], added_keys()  # one walk of the schema per call
    for key, entry in entries.items():
        if key in out or key not in present:
            continue
        old = entry.renamed_from
        if old is not None and old[0] in out:
            value = out.pop(old[0])
            out[key] = old[1].get(value, value)
        else:
            out[key] = entry.legacy
        derived.append(key)
    for entry in entries.values():  # a renamed key's old name is gone from today's config
        if entry.renamed_from is not None:
            out.pop(entry.renamed_from[0], None)
    return out, derived
