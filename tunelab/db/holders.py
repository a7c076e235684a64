"""Who holds a claimed row: one name per process, and whether that process is gone.

Background work claimed from a table (ingestion, batches) records its holder as
`host/pid-token`. Other processes take a claim back when its heartbeat or lease runs
out; a holder on this machine whose process no longer exists (a killed server that
was started again) holds nothing, so its work is taken back at once instead of
after the timeout. The token tells apart two processes that reuse one pid.

A holder proves it is alive from a `Heartbeat` thread, not from the work itself:
the work may spend minutes in one call (loading a model on a busy machine), and
only a dead or hung process should lose its claims.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from tunelab.ids import random_token

log = logging.getLogger(__name__)


def new_holder() -> str:
    """A name for this process's claims: `host/pid-token`."""
    return f"{socket.gethostname()}/{os.getpid()}-{random_token(8)}"


def gone(holder: str) -> bool:
    """True when `holder` was a process on this machine that no longer exists."""
    host, _, rest = holder.partition("/")
    pid = rest.split("-", 1)[0]
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Heartbeat:
    """Calls `beat` every `every` seconds on a daemon thread, from `start` to `stop`."""

    def __init__(self, beat: Callable[[], object], every: float, name: str) -> None:
        self.beat = beat
        self.every = every
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception:  # a database hiccup: the next beat retries
                log.exception("%s failed", self.name)
