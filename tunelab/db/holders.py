"""Who holds a claimed row: one name per process, and whether that process is gone.

Background work claimed from a table (ingestion, batches) records its holder as
`host/pid-token`. Other processes take a claim back when its heartbeat or lease runs
out; a holder on this machine whose process no longer exists (a killed server that
was started again) holds nothing, so its work is taken back at once instead of
after the timeout. The token tells apart two processes that reuse one pid.
"""

from __future__ import annotations

import os
import socket

from tunelab.ids import random_token


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
