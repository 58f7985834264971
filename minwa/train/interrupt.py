"""Ctrl-C (SIGINT) or SIGTERM while training: finish the step in hand, save the resumable state, stop.

Without this a Ctrl-C of a 30-epoch run lost everything since the last save. The handler only records the
request; the loop acts on it at the next step boundary (``Trainer.fit``), where the state is consistent,
so the resume from it is as exact as from any periodic save. A second Ctrl-C stops at once. Installed for
one process only: under torchrun the ranks would see the signal at different steps and a state save is a
collective, so there the launcher's own handling applies (the last periodic save is the resume point).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context manager that turns SIGINT/SIGTERM into ``requested`` (and back on exit)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._old: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if self.enabled:
            self._old = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}
        return False
