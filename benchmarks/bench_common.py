"""What every benchmark script prints last and how it exits (shared by the scripts in benchmarks/)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from batchmix.core.errors import BatchmixError


def print_provenance(load_before: Sequence[float], command: str) -> None:
    """Load average before/after, the date and the command: what RESULTS.md records with each number."""
    load_after = os.getloadavg()
    print(f"  load average (1/5/15 min) before {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after {', '.join(f'{x:.2f}' for x in load_after)}")
    print(f"  date {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"  command: {command}")


def run(main: Callable[[], int]) -> None:
    """Exit with main's code; a BatchmixError (a bad option) is one line and exit code 2."""
    try:
        sys.exit(main())
    except BatchmixError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
