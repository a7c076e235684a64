"""Vector stores, their files and file batches: the service behind the API.

Everything is scoped by project: a store, file or batch of another project is a 404,
exactly as if it did not exist. Statuses and counts are derived from the file rows
when asked for, so they can never drift from what ingestion actually did.
"""

from __future__ import annotations

import builtins  # VectorStores.list shadows `list` in the class body's annotations
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from tunelab import limits
from tunelab.db.base import Database
from tunelab.errors import InvalidRequest, NotFound
from tunelab.files import FileStore
from tunelab.ids import new_id
from tunelab.retrieval.backend import StoreSearch
from tunelab.retrieval.ingestion import Ingestor, drop_chunks
from tunelab.retrieval.language import StoreModels
from tunelab.retrieval.params import (
    check_attributes,
    check_expires_after,
    check_metadata,
    parse_chunking,
)
from tunelab.retrieval.tables import (
    ChunkRow,
    FileBatchMemberRow,
    FileBatchRow,
    VectorStoreFileRow,
    VectorStoreRow,
)

FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")
DAY = 86400
ACTIVITY_RESOLUTION = 60  # seconds


def _now() -> int:
    return int(time.time())


def store_not_found(store_id: str) -> NotFound:
    return NotFound(f"No vector store found with id '{store_id}'.", param="vector_store_id")


@dataclass(frozen=True)
class StoreView:
    """A store with what is derived from its files."""

    row: VectorStoreRow
    counts: dict[str, int]
    usage_bytes: int

    @property
    def expires_at(self) -> int | None:
        days = self.row.expires_after_days
        return self.row.last_active_at + days * DAY if days else None

    @property
    def status(self) -> str:
        if self.expires_at is not None and self.expires_at < _now():
            return "expired"
        return "in_progress" if self.counts["in_progress"] else "completed"


def _counts(statuses: list[str]) -> dict[str, int]:
    c = Counter(statuses)
    out = {k: c.get(k, 0) for k in FILE_STATUSES}
    out["total"] = sum(out.values())
    return out


class VectorStores:
    def __init__(
        self,
        db: Database,
        files: FileStore,
        ingestor: Ingestor,
        backend: StoreSearch,
        models: StoreModels,
    ) -> None:
        self.db = db
        self.files = files
        self.ingestor = ingestor
        self.backend = backend
        self.models = models

    # ------------------------------------------------------------ stores

    def _store(self, s: Session, project: str, store_id: str) -> VectorStoreRow:
        row = s.get(VectorStoreRow, store_id)
        if row is None or row.project != project:
            raise store_not_found(store_id)
        return row

    def view(self, s: Session, row: VectorStoreRow) -> StoreView:
        rows = s.execute(
            select(VectorStoreFileRow.status, VectorStoreFileRow.usage_bytes).where(
                VectorStoreFileRow.vector_store_id == row.id
            )
        ).all()
        return StoreView(row, _counts([r[0] for r in rows]), sum(r[1] for r in rows))

    def get(self, project: str, store_id: str) -> StoreView:
        with self.db() as s:
            return self.view(s, self._store(s, project, store_id))

    def create(
        self,
        project: str,
        *,
        name: str | None,
        description: str | None,
        file_ids: list[str],
        chunking_strategy: dict[str, Any] | None,
        expires_after: Any,
        metadata: dict[str, str] | None,
    ) -> StoreView:
        size, overlap = parse_chunking(chunking_strategy)
        days = check_expires_after(expires_after)
        check_metadata(metadata)
        if name is not None:
            limits.text(name, "name", max_chars=limits.MAX_NAME_CHARS)
        if description is not None:
            limits.text(description, "description", max_chars=limits.MAX_DESCRIPTION_CHARS)
        for file_id in file_ids:
            self.files.get(project, file_id)  # 404 before anything is written
        now = _now()
        row = VectorStoreRow(
            id=new_id("vs_"),
            project=project,
            name=name,
            description=description,
            metadata_json=json.dumps(metadata) if metadata else None,
            expires_after_days=days,
            # "" = chosen by its first document (`language.StoreModels`)
            embedding_model=self.models.at_creation,
            index_version=0,
            created_at=now,
            last_active_at=now,
        )
        with self.db.begin() as s:
            s.add(row)
        for file_id in file_ids:
            self.attach(project, row.id, file_id, attributes=None, chunking=(size, overlap))
        return self.get(project, row.id)

    def list(
        self, project: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[StoreView], bool]:
        from tunelab.db.pagination import paginate

        stmt = select(VectorStoreRow).where(VectorStoreRow.project == project)
        with self.db() as s:
            rows, more = paginate(s, stmt, VectorStoreRow, after=after, limit=limit, order=order)
            return [self.view(s, r) for r in rows], more

    def update(self, project: str, store_id: str, fields: dict[str, Any]) -> StoreView:
        if fields.get("name") is not None:
            limits.text(fields["name"], "name", max_chars=limits.MAX_NAME_CHARS)
        with self.db.begin() as s:
            row = self._store(s, project, store_id)
            if "name" in fields:
                row.name = fields["name"]
            if "expires_after" in fields:
                row.expires_after_days = check_expires_after(fields["expires_after"])
            if "metadata" in fields:
                check_metadata(fields["metadata"])
                row.metadata_json = json.dumps(fields["metadata"]) if fields["metadata"] else None
            row.last_active_at = _now()
        return self.get(project, store_id)

    def delete(self, project: str, store_id: str) -> None:
        with self.db.begin() as s:
            row = self._store(s, project, store_id)
            drop_chunks(s, store_id, None)
            s.execute(
                delete(VectorStoreFileRow).where(VectorStoreFileRow.vector_store_id == store_id)
            )
            s.execute(
                delete(FileBatchMemberRow).where(FileBatchMemberRow.vector_store_id == store_id)
            )
            s.execute(delete(FileBatchRow).where(FileBatchRow.vector_store_id == store_id))
            s.delete(row)
        self.backend.forget(store_id)

    def touch_for_search(
        self, project: str, store_ids: builtins.list[str]
    ) -> builtins.list[VectorStoreRow]:
        """The stores to search (404 for unknown ones); refreshes their last_active_at."""
        now = _now()
        with self.db() as s:
            rows = [self._store(s, project, sid) for sid in dict.fromkeys(store_ids)]
            for row in rows:
                if self.view(s, row).status == "expired":
                    raise InvalidRequest(
                        f"Vector store '{row.id}' has expired; set a new expires_after "
                        "to use it again.",
                        param="vector_store_id",
                    )
        # Activity is recorded to the minute, so searches rarely need the write lock.
        stale = [r.id for r in rows if now - r.last_active_at >= ACTIVITY_RESOLUTION]
        if stale:
            with self.db.begin() as s:
                s.execute(
                    update(VectorStoreRow)
                    .where(VectorStoreRow.id.in_(stale))
                    .values(last_active_at=now)
                )
        return rows

    # ------------------------------------------------------------ files

    def _file(self, s: Session, project: str, store_id: str, file_id: str) -> VectorStoreFileRow:
        self._store(s, project, store_id)
        row = s.get(VectorStoreFileRow, (store_id, file_id))
        if row is None:
            raise NotFound(
                f"No file found with id '{file_id}' in vector store '{store_id}'.", param="file_id"
            )
        return row

    def attach(
        self,
        project: str,
        store_id: str,
        file_id: str,
        *,
        attributes: dict[str, Any] | None,
        chunking: tuple[int, int],
        batch_id: str | None = None,
    ) -> VectorStoreFileRow:
        """Attach (or re-attach) a file and queue it for ingestion."""
        attributes = check_attributes(attributes)
        file_row = self.files.get(project, file_id)
        now = _now()
        with self.db.begin() as s:
            self._store(s, project, store_id)
            row = s.get(VectorStoreFileRow, (store_id, file_id))
            if row is None:
                row = VectorStoreFileRow(vector_store_id=store_id, file_id=file_id, attempt=0)
                s.add(row)
            row.project = project
            row.filename = file_row.filename
            row.status = "in_progress"
            row.last_error_code = row.last_error_message = None
            row.attributes_json = json.dumps(attributes) if attributes is not None else None
            row.max_chunk_tokens, row.chunk_overlap_tokens = chunking
            row.usage_bytes = 0
            row.attempt = (row.attempt or 0) + 1
            # A new attempt is unclaimed: whoever held the previous one cannot commit it.
            row.worker_id, row.heartbeat_at, row.claims = None, None, 0
            row.created_at = now
            if batch_id is not None:
                s.merge(
                    FileBatchMemberRow(
                        batch_id=batch_id, file_id=file_id, vector_store_id=store_id, created_at=now
                    )
                )
        self.ingestor.wake()
        return row

    def get_file(self, project: str, store_id: str, file_id: str) -> VectorStoreFileRow:
        with self.db() as s:
            return self._file(s, project, store_id, file_id)

    def list_files(
        self,
        project: str,
        store_id: str,
        *,
        status: str | None,
        after: str | None,
        limit: int,
        order: str,
        batch_id: str | None = None,
    ) -> tuple[builtins.list[VectorStoreFileRow], bool]:
        from tunelab.db.pagination import paginate

        if status is not None and status not in FILE_STATUSES:
            raise InvalidRequest(
                f"filter must be one of {', '.join(FILE_STATUSES)}.", param="filter"
            )
        stmt: Select[Any] = select(VectorStoreFileRow).where(
            VectorStoreFileRow.vector_store_id == store_id
        )
        if status:
            stmt = stmt.where(VectorStoreFileRow.status == status)
        if batch_id:
            stmt = stmt.where(
                VectorStoreFileRow.file_id.in_(
                    select(FileBatchMemberRow.file_id).where(
                        FileBatchMemberRow.batch_id == batch_id
                    )
                )
            )
        with self.db() as s:
            self._store(s, project, store_id)
            return paginate(
                s, stmt, VectorStoreFileRow, after=after, limit=limit, order=order, id_col="file_id"
            )

    def update_file(
        self, project: str, store_id: str, file_id: str, attributes: dict[str, Any] | None
    ) -> VectorStoreFileRow:
        attributes = check_attributes(attributes)
        with self.db.begin() as s:
            row = self._file(s, project, store_id, file_id)
            row.attributes_json = json.dumps(attributes) if attributes is not None else None
        return row

    def detach(self, project: str, store_id: str, file_id: str) -> None:
        with self.db.begin() as s:
            row = self._file(s, project, store_id, file_id)
            # The row first: on PostgreSQL its delete waits for an ingestion write in
            # progress (ingestion.py locks the row), so the chunks dropped next include it.
            s.delete(row)
            s.flush()
            drop_chunks(s, store_id, file_id)

    def file_text(self, project: str, store_id: str, file_id: str) -> str:
        """The indexed text of a file, rebuilt from its (overlapping) chunks."""
        with self.db() as s:
            self._file(s, project, store_id, file_id)
            chunks = s.execute(
                select(ChunkRow.text, ChunkRow.start_char, ChunkRow.end_char)
                .where(ChunkRow.vector_store_id == store_id, ChunkRow.file_id == file_id)
                .order_by(ChunkRow.position)
            ).all()
        out: builtins.list[str] = []
        covered = 0
        for text_, start, end in chunks:
            if end <= covered:
                continue
            skip = max(covered - start, 0)
            out.append(("\n\n" if skip == 0 and out and start > covered else "") + text_[skip:])
            covered = end
        return "".join(out)

    def on_file_deleted(self, project: str, file_id: str) -> None:
        """Files API hook: a deleted File leaves every store of its project."""
        with self.db.begin() as s:
            rows = s.execute(
                select(VectorStoreFileRow).where(
                    VectorStoreFileRow.project == project, VectorStoreFileRow.file_id == file_id
                )
            ).scalars()
            for row in list(rows):
                drop_chunks(s, row.vector_store_id, file_id)
                s.delete(row)

    # ------------------------------------------------------------ batches

    def create_batch(
        self,
        project: str,
        store_id: str,
        items: builtins.list[tuple[str, dict[str, Any] | None, tuple[int, int]]],
    ) -> FileBatchRow:
        """items: (file_id, attributes, (chunk size, overlap)) for each file."""
        for file_id, attributes, _ in items:
            self.files.get(project, file_id)
            check_attributes(attributes)
        batch = FileBatchRow(
            id=new_id("vsfb_"),
            project=project,
            vector_store_id=store_id,
            cancelled=False,
            created_at=_now(),
        )
        with self.db.begin() as s:
            self._store(s, project, store_id)
            s.add(batch)
        for file_id, attributes, chunking in items:
            self.attach(
                project,
                store_id,
                file_id,
                attributes=attributes,
                chunking=chunking,
                batch_id=batch.id,
            )
        return batch

    def _batch(self, s: Session, project: str, store_id: str, batch_id: str) -> FileBatchRow:
        self._store(s, project, store_id)
        row = s.get(FileBatchRow, batch_id)
        if row is None or row.vector_store_id != store_id:
            raise NotFound(f"No file batch found with id '{batch_id}'.", param="batch_id")
        return row

    def batch_view(
        self, project: str, store_id: str, batch_id: str
    ) -> tuple[FileBatchRow, dict[str, int], str]:
        """(batch, file_counts, status)."""
        with self.db() as s:
            batch = self._batch(s, project, store_id, batch_id)
            statuses = s.execute(
                select(VectorStoreFileRow.status)
                .join(
                    FileBatchMemberRow,
                    (FileBatchMemberRow.file_id == VectorStoreFileRow.file_id)
                    & (FileBatchMemberRow.vector_store_id == VectorStoreFileRow.vector_store_id),
                )
                .where(FileBatchMemberRow.batch_id == batch_id)
            ).scalars()
            counts = _counts(list(statuses))
        if batch.cancelled:
            status = "cancelled"
        elif counts["in_progress"]:
            status = "in_progress"
        elif counts["total"] and counts["failed"] == counts["total"]:
            status = "failed"
        else:
            status = "completed"
        return batch, counts, status

    def cancel_batch(self, project: str, store_id: str, batch_id: str) -> None:
        with self.db.begin() as s:
            batch = self._batch(s, project, store_id, batch_id)
            members = select(FileBatchMemberRow.file_id).where(
                FileBatchMemberRow.batch_id == batch_id
            )
            for row in s.execute(
                select(VectorStoreFileRow).where(
                    VectorStoreFileRow.vector_store_id == store_id,
                    VectorStoreFileRow.file_id.in_(members),
                    VectorStoreFileRow.status == "in_progress",
                )
            ).scalars():
                row.status = "cancelled"
            batch.cancelled = True

    def chunk_count(self, store_id: str) -> int:
        with self.db() as s:
            return int(
                s.execute(
                    select(func.count())
                    .select_from(ChunkRow)
                    .where(ChunkRow.vector_store_id == store_id)
                ).scalar_one()
            )
