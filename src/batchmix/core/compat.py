"""The only private names of other libraries that batchmix reads, each behind one adapter.

A private name can change in any release (transformers 5.25 changed the signature of the mask
helper the trunk cache once called). Each adapter below reads a name for which its library has no
public path, says why, and fails with one line naming the installed version when the name is gone,
so a new release shows up as one clear error (and in `make test-latest`), not as a deep traceback
or a silently wrong number. tests/test_compat.py checks each one, present and missing.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from batchmix.core.errors import BatchmixError


def installed(package: str) -> str:
    """The installed version of `package`, or "unknown"."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _private(obj: Any, name: str, package: str, what: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise BatchmixError(f"{package} {installed(package)} no longer has {type(obj).__name__}.{name} ({what}); "
                            f"install the tested versions (make install, from requirements/lock.txt)") from None


def attention_implementation(config: Any) -> str | None:
    """The attention implementation of a transformers model ("eager", "sdpa", "flex_attention", ...).

    transformers sets it with the public `attn_implementation=` and `set_attn_implementation`, but
    reads it back only from the config's private `_attn_implementation` (its own docs do the same).
    """
    return _private(config, "_attn_implementation", "transformers", "the model's attention implementation")


def has_indices_mapping(dataset: Any) -> bool:
    """Whether a `datasets.Dataset` reads its rows through an indices mapping (a shuffle or a
    non-contiguous select), i.e. whether its Arrow table is not its rows in order.

    `datasets` has no public test for it: `flatten_indices()` is public but always rewrites the
    whole table, which is what this check exists to avoid for an already flat, memory-mapped set.
    """
    return _private(dataset, "_indices", "datasets", "the dataset's indices mapping") is not None
