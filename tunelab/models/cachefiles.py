"""Files derived once from other files into the model cache: their key and their writing.

A derived file (a patched GGUF, a re-quantised one, a converted adapter) is named by
a key of its sources' identity (path, size, mtime), so a changed source gets a new
file; and it is written under a temporary name and renamed into place, so a crash
never leaves a half-written file that a later run would take for a finished one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sources_key(*paths: Path, salt: str = "") -> str:
    """16 hex digits that change when any of `paths` (or `salt`) does."""
    parts = [salt]
    for p in paths:
        stat = p.stat()
        parts.append(f"{p.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextmanager
def written(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` to write; renamed to `target` when the block
    ends without an exception, removed in every case."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
