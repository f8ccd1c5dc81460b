"""Ctrl-C, the same for every command.

The first interrupt stops every node from starting another step or phase and aborts read-only
waits at once (a gather, wait-ready); a script that changes something is atomic and may finish.
The second interrupt stops waiting for those scripts too. Cleanups that must happen (a join
token, a JoinConfiguration file) still run afterwards with a short timeout. A third interrupt
leaves at once. The command then prints ``interrupted`` and its recap, and exits 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a run stopped by Ctrl-C
CLEANUP_TIMEOUT = 20.0  # seconds each cleanup may take after an interrupt


class Interrupted(Exception):
    """Raised inside a run where an interrupt stops the work in hand."""


class Interrupt:
    """The interrupt state of one run, shared by every thread of it."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.stop = threading.Event()  # first Ctrl-C: start nothing new, abort read-only waits
        self.abandon = threading.Event()  # second Ctrl-C: stop waiting for running scripts
        self._say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self._presses = 0

    @property
    def requested(self) -> bool:
        return self.stop.is_set()

    def press(self) -> None:
        """One Ctrl-C (also what a test calls to interrupt a run in-process)."""
        self._presses += 1
        if self._presses == 1:
            self.stop.set()
            self._say(
                "\ninterrupt: no new step or phase will start; read-only waits stop now, "
                "running scripts may finish (Ctrl-C again to stop waiting for them)"
            )
        elif self._presses == 2:
            self.abandon.set()
            self._say("\ninterrupt: no longer waiting for running scripts; cleaning up")
        else:
            self._say("\ninterrupt: leaving at once; cleanups skipped")
            os._exit(EXIT_CODE)

    def aborts(self, readonly: bool) -> bool:
        """Whether a remote command in flight should be given up now."""
        return self.abandon.is_set() or (readonly and self.stop.is_set())

    def check(self) -> None:
        """Before starting work: raise Interrupted once Ctrl-C was pressed."""
        if self.stop.is_set():
            raise Interrupted("interrupted")

    @contextlib.contextmanager
    def handling(self) -> Iterator[Interrupt]:
        """Take SIGINT for the duration (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, lambda signum, frame: self.press())
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
