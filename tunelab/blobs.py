"""The blob-store seam: named byte streams, written atomically.

Uploaded files live here, and with object storage the fine-tuned weights too
(tunelab.models.weights). `LocalBlobStore` keeps them in a directory; an
object-storage backend implements the same Protocol. A blob is either fully
there or absent: `put` streams into a temporary object, hashes on the way, and
publishes it under its key only when complete; `put_file` publishes a finished
local file the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1 << 20

# Temporary files of a write in progress: `.{kind}-{pid}@{machine}~{random}`. A process
# killed mid-write leaves its file behind; `sweep_temp_files` removes it at the next
# start. The name says whose it is, because several replicas may share a directory.
TEMP_KINDS = ("upload", "download", "part")
# A temporary file whose owner cannot be checked from here (another machine, or a name
# without an owner) is only removed once nothing has written to it for this long: far
# longer than any write pauses (a check of a 512 MiB upload, its copy to S3).
TEMP_GRACE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Stored:
    size: int
    sha256: str


class TooLarge(Exception):
    """The stream passed `max_bytes`; nothing was stored."""


class BlobStore(Protocol):
    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        max_bytes: int | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> Stored:
        """Store `stream` under `key`, atomically. `check(path)` runs on the
        complete bytes before they are published and may raise to refuse them."""
        ...

    def local_path(self, key: str) -> Path:
        """A local file with the blob's bytes (for readers that need a path)."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Publish the finished file at `path` under `key`, atomically (`path` stays)."""
        ...

    def get_file(self, key: str, dest: Path) -> bool:
        """Write the blob's bytes to the file `dest` (the caller's, and the caller
        publishes it); False when there is no such blob."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix` (a folder: ends with "/")."""
        ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class LocalBlobStore:
    """Blobs as files in one directory (a key's "/" are folders)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        max_bytes: int | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> Stored:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with spooled(stream, self.root, key, max_bytes=max_bytes, check=check) as (tmp, stored):
            os.replace(tmp, final)
        return stored

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def put_file(self, key: str, path: Path) -> None:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(final.parent, "part")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def get_file(self, key: str, dest: Path) -> bool:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rpartition("/")[0]  # only walk below the prefix's folder
        return sorted(
            key
            for p in (folder.rglob("*") if folder.is_dir() else ())
            if p.is_file()
            and (key := p.relative_to(self.root).as_posix()).startswith(prefix)
            and not any(part.startswith(".") for part in key.split("/"))
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()


def check_key(key: str) -> str:
    """A blob key is plain names joined by "/" (no empty, hidden, or parent parts)."""
    if not key or any(not part or part.startswith(".") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}")
    return key


@contextmanager
def spooled(
    stream: BinaryIO,
    directory: Path,
    key: str,
    *,
    max_bytes: int | None,
    check: Callable[[Path], None] | None,
) -> Iterator[tuple[Path, Stored]]:
    """`stream` in a temporary file in `directory`: size-bounded, hashed, checked.
    The caller moves the file where it belongs; whatever is left is removed."""
    fd, tmp = temp_file(directory, "upload")
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(key)
                digest.update(chunk)
                out.write(chunk)
        if check is not None:
            check(tmp)
        yield tmp, Stored(size, digest.hexdigest())
    finally:
        tmp.unlink(missing_ok=True)


def _machine() -> str:
    """This process's host and PID namespace: PIDs are only comparable within one."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}.{namespace}".replace("~", "-").replace("/", "-")


def _temp_prefix(kind: str) -> str:
    return f".{kind}-{os.getpid()}@{_machine()}~"


def temp_file(directory: Path, kind: str) -> tuple[int, Path]:
    """A new temporary file in `directory` named for its owner: (open fd, path)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(kind))
    return fd, Path(name)


def temp_dir(directory: Path, kind: str) -> Path:
    """A new temporary folder in `directory`, named for its owner like `temp_file`'s."""
    return Path(tempfile.mkdtemp(dir=directory, prefix=_temp_prefix(kind)))


def _abandoned(path: Path, now: float, grace_seconds: float) -> bool:
    owner = path.name.partition("-")[2].rpartition("~")[0]  # "{pid}@{machine}" or ""
    pid, _, machine = owner.partition("@")
    if pid.isdigit() and machine == _machine() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True  # its writer is gone: nothing will ever finish or remove it
        except PermissionError:
            pass  # alive (another user's process)
    try:
        return now - path.stat().st_mtime > grace_seconds
    except FileNotFoundError:
        return False  # finished meanwhile


def sweep_temp_files(
    directory: Path, *, grace_seconds: float = TEMP_GRACE_SECONDS, now: float | None = None
) -> list[Path]:
    """Remove the temporary files (and folders: `temp_dir`) in `directory` that no
    live process is writing (their writer died: a kill, a power cut); returns what was
    removed. Those of live writers, here or on other replicas sharing the directory,
    are left alone."""
    if not directory.is_dir():
        return []
    now = time.time() if now is None else now
    prefixes = tuple(f".{kind}-" for kind in TEMP_KINDS)
    removed = []
    for path in directory.iterdir():
        if path.name.startswith(prefixes) and _abandoned(path, now, grace_seconds):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed
