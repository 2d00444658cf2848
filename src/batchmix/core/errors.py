"""The one exception type users should ever see from batchmix, and the one way entry points end on it.

A `BatchmixError` carries a single line that names the bad value and says how to fix it.
Every command-line entry point prints that line (no traceback; it goes to the debug log) and exits
with status 2: argparse mains `return error_line(err)`, Hydra mains and callbacks, which end the
process themselves, run inside `exit_on_error()`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_BAD_INPUT = 2


class BatchmixError(Exception):
    """A user-facing error: one line, naming the bad value and the fix."""


def error_line(err: BatchmixError | str) -> int:
    """Print `batchmix: error: <err>` on stderr (the traceback only in the debug log); returns the exit status."""
    logging.getLogger("batchmix").debug("error", exc_info=isinstance(err, BaseException))
    print(f"batchmix: error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


@contextmanager
def exit_on_error() -> Iterator[None]:
    """A `BatchmixError` inside the block ends the process with `error_line`'s one line and status 2."""
    try:
        yield
    except BatchmixError as err:
        sys.exit(error_line(err))
