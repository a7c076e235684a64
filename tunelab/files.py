"""The file store: uploaded bytes in the blob store, metadata in the database, per project.

Bytes stream into the blob store, which publishes them only when complete (and,
for fine-tune files, validated); the row is committed only after that, and a
failed commit removes the blob, so a file is either fully there or not at all.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from tunelab.blobs import BlobStore, TooLarge
from tunelab.db.base import Database, now
from tunelab.db.pagination import paginate
from tunelab.db.tables import FileRow
from tunelab.errors import InvalidRequest, NotFound, PayloadTooLarge
from tunelab.ids import new_id
from tunelab.protocol.files import FileObject

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
SERVER_PURPOSES = ("assistants_output", "batch_output", "fine-tune-results")

OnDelete = Callable[[str, str], None]  # (project, file_id)
# Judges a stored file's bytes: (status, status_details).
Validator = Callable[[Path], tuple[str, str | None]]


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


def validate_fine_tune(path: Path) -> tuple[str, str | None]:
    """A fine-tune upload is checked by the same validator as prepare-data and jobs,
    judged by its content whatever its name (tunelab.data.validation.upload_verdict)."""
    from tunelab.data.validation import upload_verdict

    return upload_verdict(path)


class FileStore:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        *,
        max_bytes: int,
        validators: dict[str, Validator] | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.validators = {"fine-tune": validate_fine_tune} if validators is None else validators
        # Other features drop what they derived from a file (e.g. vector-store chunks).
        self.on_delete: list[OnDelete] = []

    def path(self, row: FileRow) -> Path:
        """A local path with the stored bytes of a file."""
        return self.blobs.local_path(row.id)

    def create(
        self,
        *,
        project: str,
        filename: str,
        purpose: str,
        stream: BinaryIO,
        expires_at: int | None = None,
    ) -> FileRow:
        """Store an upload; files of a purpose with a validator get its verdict as status."""
        file_id = new_id("file-")
        validator = self.validators.get(purpose)
        verdict: tuple[str, str | None] = ("processed", None)

        def check(path: Path) -> None:
            nonlocal verdict
            if validator is not None:
                verdict = validator(path)

        try:
            stored = self.blobs.put(file_id, stream, max_bytes=self.max_bytes, check=check)
        except TooLarge:
            raise PayloadTooLarge(
                f"File is larger than the limit of {self.max_bytes} bytes; "
                "split it or raise TUNELAB_MAX_UPLOAD_BYTES.",
                param="file",
            ) from None
        row = FileRow(
            id=file_id,
            project=project,
            filename=filename,
            purpose=purpose,
            bytes=stored.size,
            sha256=stored.sha256,
            status=verdict[0],
            status_details=verdict[1],
            created_at=now(),
            expires_at=expires_at,
        )
        try:
            with self.db.begin() as s:
                s.add(row)
        except BaseException:
            self.blobs.delete(file_id)
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
        self.blobs.delete(row.id)


def check_purpose(purpose: str) -> None:
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"'{purpose}' is not a valid purpose. Use one of: {', '.join(UPLOAD_PURPOSES)}.",
            param="purpose",
        )
