"""SIGTERM (scancel, `kill`, a preempted node) and Ctrl-C stop the sweep, not just the trial.

Python's default SIGTERM ends the process on the spot (its trials would wait out the heartbeat grace
period); Lightning turns Ctrl-C inside `fit` into `sys.exit(1)`, which a sweeper would record as one
failed trial and go on. Inside `interrupt_signals()` both signals raise `SweepInterrupted`, which no
task code catches as an error (it is not an `Exception`): the sweeper marks its in-flight trials
FAIL, queues their parameters again and exits. Lightning calls a handler installed before `fit`
after its own, so this also holds while a trial trains in the sweeper's process.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SweepInterrupted(BaseException):
    """The sweeper received `signum`; exit status 128 + signum, as a shell reports a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: Any) -> None:
    raise SweepInterrupted(signum)


@contextmanager
def interrupt_signals() -> Iterator[None]:
    """SIGTERM / SIGINT raise SweepInterrupted in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
