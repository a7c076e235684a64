"""Uploads (contract §13): a large file sent in parts, then assembled into a File.

Each part is streamed to its own file under <parts_dir>/<upload_id>/
(temp file + rename, so a part is either whole or absent) and never held in
memory. `complete` streams the parts, in the order the client names, into the
file store, which hashes, validates (a fine-tune upload is judged by content)
and publishes it: the File appears whole or not at all. Parts are
removed once the upload completes, is cancelled or expires.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import BigInteger, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from tunelab.blobs import CHUNK, sweep_temp_files, temp_file
from tunelab.db.base import Base, Database, now
from tunelab.db.tables import FileRow
from tunelab.errors import InvalidRequest, NotFound, PayloadTooLarge
from tunelab.files import FileStore, check_purpose
from tunelab.ids import new_id

MAX_PART_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_BYTES = 8 * 1024**3
DEFAULT_TTL = 3600
# Purposes whose content is JSON Lines, and the MIME types a client may give for it.
JSONL_PURPOSES = ("fine-tune", "batch", "evals")
JSONL_TYPES = (
    "application/jsonl",
    "text/jsonl",
    "application/x-ndjson",
    "application/json",
    "text/plain",
    "application/octet-stream",
)


class UploadRow(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    filename: Mapped[str] = mapped_column(String(1024))
    purpose: Mapped[str] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(256))
    bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # pending | completed | cancelled
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    file_id: Mapped[str | None] = mapped_column(String(64))


class UploadPartRow(Base):
    __tablename__ = "upload_parts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer)


def status_of(row: UploadRow, at: int) -> str:
    """An upload still pending past its expiry is expired (checked when read)."""
    return "expired" if row.status == "pending" and at >= row.expires_at else row.status


class UploadStore:
    def __init__(self, db: Database, files: FileStore, parts_dir: Path) -> None:
        self.db = db
        self.files = files
        self.root = parts_dir

    def create(
        self,
        project: str,
        *,
        filename: str,
        purpose: str,
        mime_type: str,
        size: int,
        ttl: int | None = None,
    ) -> UploadRow:
        check_purpose(purpose)
        limit = min(MAX_UPLOAD_BYTES, self.files.max_bytes)
        if not 1 <= size <= limit:
            raise InvalidRequest(f"'bytes' must be between 1 and {limit}.", param="bytes")
        if purpose in JSONL_PURPOSES and mime_type not in JSONL_TYPES:
            raise InvalidRequest(
                f"mime_type {mime_type!r} does not fit purpose '{purpose}', whose files are "
                f"JSON Lines; use one of: {', '.join(JSONL_TYPES)}.",
                param="mime_type",
            )
        if ttl is not None and not 3600 <= ttl <= 2_592_000:
            raise InvalidRequest(
                "expires_after.seconds must be between 3600 and 2592000.",
                param="expires_after.seconds",
            )
        created = now()
        row = UploadRow(
            id=new_id("upload_"),
            project=project,
            filename=Path(filename).name or "upload",
            purpose=purpose,
            mime_type=mime_type,
            bytes=size,
            status="pending",
            created_at=created,
            expires_at=created + (ttl or DEFAULT_TTL),
        )
        with self.db.begin() as s:
            s.add(row)
        return row

    def get(self, project: str, upload_id: str) -> UploadRow:
        with self.db() as s:
            row = s.get(UploadRow, upload_id)
        if row is None or row.project != project:
            raise NotFound(f"No upload found with id '{upload_id}'.", param="upload_id")
        return row

    def _pending(self, project: str, upload_id: str) -> UploadRow:
        row = self.get(project, upload_id)
        status = status_of(row, now())
        if status != "pending":
            if status == "expired":
                self._drop_parts(row.id)
            raise InvalidRequest(
                f"Upload {upload_id} is {status}; parts can be added, and the upload completed "
                "or cancelled, only while it is pending.",
                param="upload_id",
                code="invalid_upload_status",
            )
        return row

    def add_part(self, project: str, upload_id: str, data: BinaryIO) -> UploadPartRow:
        """Stream one part to disk (at most 64 MB)."""
        row = self._pending(project, upload_id)
        part_dir = self.root / row.id
        part_dir.mkdir(parents=True, exist_ok=True)
        part_id = new_id("part_")
        fd, tmp = temp_file(part_dir, "part")
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := data.read(CHUNK):
                    size += len(chunk)
                    if size > MAX_PART_BYTES:
                        raise PayloadTooLarge(
                            f"A part is at most {MAX_PART_BYTES} bytes; send smaller parts.",
                            param="data",
                        )
                    out.write(chunk)
            os.replace(tmp, part_dir / part_id)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        part = UploadPartRow(id=part_id, upload_id=row.id, created_at=now(), size=size)
        with self.db.begin() as s:
            s.add(part)
        return part

    def complete(
        self, project: str, upload_id: str, part_ids: list[str], md5: str | None = None
    ) -> tuple[UploadRow, FileRow]:
        """Assemble the named parts, in order, into a new File."""
        row = self._pending(project, upload_id)
        with self.db() as s:
            parts = {
                p.id: p
                for p in s.execute(
                    select(UploadPartRow).where(UploadPartRow.upload_id == row.id)
                ).scalars()
            }
        unknown = [p for p in part_ids if p not in parts]
        if unknown or len(set(part_ids)) != len(part_ids) or not part_ids:
            raise InvalidRequest(
                "part_ids must name each part of this upload once"
                + (f"; unknown: {', '.join(unknown)}." if unknown else "."),
                param="part_ids",
            )
        total = sum(parts[p].size for p in part_ids)
        if total != row.bytes:
            raise InvalidRequest(
                f"The parts add up to {total} bytes, but the upload was created with "
                f"bytes={row.bytes}.",
                param="part_ids",
            )
        paths = [self.root / row.id / p for p in part_ids]
        if md5 is not None:
            digest = hashlib.md5(usedforsecurity=False)
            for chunk in _read_all(paths):
                digest.update(chunk)
            if digest.hexdigest() != md5.lower():
                raise InvalidRequest(
                    "The md5 of the assembled parts does not match 'md5'.", param="md5"
                )
        file = self.files.create(
            project=project,
            filename=row.filename,
            purpose=row.purpose,
            stream=io.BufferedReader(_Concat(paths), CHUNK),
        )
        with self.db.begin() as s:
            obj = s.get(UploadRow, row.id)
            if obj is None or obj.status != "pending":  # a concurrent cancel won
                self.files.delete(project, file.id)
                raise InvalidRequest(f"Upload {upload_id} is no longer pending.", param="upload_id")
            obj.status, obj.file_id = "completed", file.id
            row = obj
        self._drop_parts(row.id)
        return row, file

    def cancel(self, project: str, upload_id: str) -> UploadRow:
        row = self._pending(project, upload_id)
        with self.db.begin() as s:
            obj = s.get(UploadRow, row.id)
            if obj is not None:
                obj.status = "cancelled"
                row = obj
        self._drop_parts(row.id)
        return row

    def file_of(self, row: UploadRow) -> FileRow | None:
        return self.files.get(row.project, row.file_id) if row.file_id else None

    def sweep(self) -> int:
        """Remove the part files a killed process left half-written; how many."""
        if not self.root.is_dir():
            return 0
        return sum(len(sweep_temp_files(d)) for d in self.root.iterdir() if d.is_dir())

    def _drop_parts(self, upload_id: str) -> None:
        shutil.rmtree(self.root / upload_id, ignore_errors=True)


def _read_all(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


class _Concat(io.RawIOBase):
    """The parts as one readable stream (what FileStore.create reads from)."""

    def __init__(self, paths: list[Path]) -> None:
        self._chunks = _read_all(paths)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._left:
            self._left = next(self._chunks, b"")
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n
