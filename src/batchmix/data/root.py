"""Where the LAReQA data lives on this machine.

The data is never copied into the repository (licence and size), so every entry point resolves
it the same way: an explicit `data.root` wins, then the `BATCHMIX_DATA` environment variable,
then the conventional `../shared/data/<dataset>` beside the checkout. Failing that the user gets
one line listing every path tried and the two ways to fix it.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchmix.core.errors import BatchmixError

ENV_VAR = "BATCHMIX_DATA"


def _repo_root() -> Path | None:
    """The checkout holding this package: the nearest ancestor with a `pyproject.toml`, if any."""
    return next((p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file()), None)


def _fix(dataset: str) -> str:
    return f"set data.root=/path/to/{dataset} or export {ENV_VAR}=/path/to/{dataset}"


def resolve_data_root(root: str | os.PathLike | None, dataset: str = "xquad-r") -> Path:
    """The folder holding `<lang>.json` for `dataset`.

    Precedence: `root` (explicit config) > `$BATCHMIX_DATA` (either the dataset folder itself or
    a folder holding `<dataset>/`) > `../shared/data/<dataset>` relative to the working directory,
    then relative to the repository root. An explicit `root` or `$BATCHMIX_DATA` that does not
    exist is an error rather than a silent fall-through, so a typo never loads other data.
    """
    if root is not None and str(root) != "":
        path = Path(str(root)).expanduser()  # str(): `data.root=5` arrives as an int
        if path.is_dir():
            return path.resolve()
        raise BatchmixError(f"data.root={str(root)!r} is not a directory; {_fix(dataset)}")

    env = os.environ.get(ENV_VAR, "")
    if env:
        base = Path(env).expanduser()
        if (base / dataset).is_dir():
            return (base / dataset).resolve()
        if base.is_dir() and any(base.glob("*.json")):
            return base.resolve()
        raise BatchmixError(f"{ENV_VAR}={env!r} holds neither {dataset}/ nor any <lang>.json "
                            f"(tried {base / dataset}, {base}); {_fix(dataset)}")

    repo = _repo_root()
    bases = [Path.cwd()] + ([repo] if repo is not None else [])
    tried = list(dict.fromkeys((base / ".." / "shared" / "data" / dataset).resolve() for base in bases))
    for candidate in tried:
        if candidate.is_dir():
            return candidate
    raise BatchmixError(f"no data found for {dataset!r}: tried {', '.join(str(p) for p in tried)}; {_fix(dataset)}")
