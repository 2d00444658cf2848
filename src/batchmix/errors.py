"""The one exception type users should ever see from batchmix.

A `BatchmixError` carries a single line that names the bad value and says how to fix it.
The command-line entry points print that line (no traceback) and exit with status 2.
"""


class BatchmixError(Exception):
    """A user-facing error: one line, naming the bad value and the fix."""
