"""Time as a seam: code whose behaviour depends on time takes a `Clock`.

Heartbeats, stale-worker recovery and estimated finish times read the wall clock;
kill deadlines read the monotonic one; a worker's idle loop waits. Passing a clock
in lets a test move time forward instead of sleeping through it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (stored in the database, shown to users)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""
        ...

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait up to `seconds` or until `stop` is set; True when `stop` is set."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
