"""The file store: uploaded bytes on disk, metadata in the database, per project.

Bytes are streamed into a temp file under files_dir, hashed on the way, then
renamed into place, so a file is either fully there or not at all. The row is
committed only after the rename; a failed upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tunelab.db.base import now
from tunelab.db.tables import FileRow
from tunelab.errors import InvalidRequest, NotFound, PayloadTooLarge
from tunelab.ids import new_id
from tunelab.protocol.files import FileObject

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
SERVER_PURPOSES = ("assistants_output", "batch_output", "fine-tune-results")
CHUNK = 1 << 20

OnDelete = Callable[[str, str], None]  # (project, file_id)


def file_object(row: FileRow) -> FileObject:
    """A stored file as OpenAI's File object."""
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
        status=row.status,
        status_details=row.status_details,
        expires_at=row.expires_at,
    )


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="id")


class FileStore:
    def __init__(self, db: sessionmaker, root: Path, *, max_bytes: int) -> None:
        self.db = db
        self.root = root
        self.max_bytes = max_bytes
        # Other features drop what they derived from a file (e.g. vector-store chunks).
        self.on_delete: list[OnDelete] = []
        root.mkdir(parents=True, exist_ok=True)

    def path(self, row: FileRow) -> Path:
        """Where the stored bytes of a file are."""
        return self.root / row.id

    def create(
        self,
        *,
        project: str,
        filename: str,
        purpose: str,
        stream: BinaryIO,
        validate: Callable[[Path], tuple[str, str | None]] | None = None,
        expires_at: int | None = None,
    ) -> FileRow:
        """Store an upload. `validate(path)` returns (status, status_details)."""
        file_id = new_id("file-")
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLarge(
                            f"File is larger than the limit of {self.max_bytes} bytes; "
                            "split it or raise TUNELAB_MAX_UPLOAD_BYTES.",
                            param="file",
                        )
                    digest.update(chunk)
                    out.write(chunk)
            status, details = validate(tmp) if validate else ("processed", None)
            final = self.root / file_id
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        row = FileRow(
            id=file_id,
            project=project,
            filename=filename,
            purpose=purpose,
            bytes=size,
            sha256=digest.hexdigest(),
            status=status,
            status_details=details,
            created_at=now(),
            expires_at=expires_at,
        )
        try:
            with self.db.begin() as s:
                s.add(row)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return row

    def create_from_bytes(
        self, *, project: str, filename: str, purpose: str, data: bytes
    ) -> FileRow:
        return self.create(
            project=project, filename=filename, purpose=purpose, stream=io.BytesIO(data)
        )

    def get(self, project: str, file_id: str) -> FileRow:
        with self.db() as s:
            row = s.get(FileRow, file_id)
        if row is None or row.project != project:
            raise file_not_found(file_id)
        return row

    def list(
        self, project: str, *, purpose: str | None, after: str | None, limit: int, order: str
    ) -> tuple[list[FileRow], bool]:
        from tunelab.db.pagination import paginate

        stmt = select(FileRow).where(FileRow.project == project)
        if purpose:
            stmt = stmt.where(FileRow.purpose == purpose)
        with self.db() as s:
            return paginate(s, stmt, FileRow, after=after, limit=limit, order=order)

    def delete(self, project: str, file_id: str) -> None:
        row = self.get(project, file_id)
        for hook in self.on_delete:
            hook(project, file_id)
        with self.db.begin() as s:
            obj = s.get(FileRow, file_id)
            if obj is not None:
                s.delete(obj)
        self.path(row).unlink(missing_ok=True)


def check_purpose(purpose: str) -> None:
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"'{purpose}' is not a valid purpose. Use one of: {', '.join(UPLOAD_PURPOSES)}.",
            param="purpose",
        )
