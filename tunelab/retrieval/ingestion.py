"""Background ingestion: document -> text -> chunks -> vectors -> indexes.

Attaching a file only writes an `in_progress` row and queues (store, file, attempt)
here; a small thread pool does the work so the request returns at once (the SDK's
`upload_and_poll` / `create_and_poll` then poll). Every path ends the file in
`completed`, `failed` (with `last_error` saying why) or leaves it `cancelled`, so the
pollers always finish. Chunks are committed in one transaction together with the
`completed` status, and only if the attempt is still current: a file detached,
cancelled or re-attached meanwhile is never half-indexed. On startup, files still
`in_progress` (the server stopped mid-ingestion) are queued again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tunelab.errors import NotFound
from tunelab.retrieval.chunking import StaticStrategy, chunk_text
from tunelab.retrieval.documents import DocumentError, extract_text
from tunelab.retrieval.index import KeywordIndex
from tunelab.retrieval.tables import ChunkRow, VectorStoreFileRow, VectorStoreRow

log = logging.getLogger(__name__)

EMBED_BATCH = 64


@contextmanager
def write_transaction(db: sessionmaker) -> Iterator[Session]:
    """A transaction that takes SQLite's write lock first.

    A WAL read transaction that later writes fails at once (SQLITE_BUSY_SNAPSHOT) if
    another connection committed in between; taking the write lock up front makes it
    wait for the busy timeout instead. The no-op UPDATE is how to ask for the lock
    through a session that has already begun.
    """
    with db.begin() as s:
        if s.get_bind().dialect.name == "sqlite":
            s.execute(text("UPDATE vector_stores SET index_version = index_version WHERE 0"))
        yield s


def drop_chunks(s: Session, keyword: KeywordIndex, store_id: str, file_id: str | None) -> int:
    """Delete a file's (or, with None, the whole store's) chunks; returns how many."""
    where = [ChunkRow.vector_store_id == store_id]
    if file_id is not None:
        where.append(ChunkRow.file_id == file_id)
    ids = list(s.execute(select(ChunkRow.id).where(*where)).scalars())
    if ids:
        keyword.remove(s, ids)
        s.execute(delete(ChunkRow).where(*where))
        s.execute(
            update(VectorStoreRow)
            .where(VectorStoreRow.id == store_id)
            .values(index_version=VectorStoreRow.index_version + 1)
        )
    return len(ids)


class Ingestor:
    def __init__(
        self,
        db: sessionmaker,
        files: Any,
        embeddings: Any,
        keyword: KeywordIndex,
        *,
        workers: int = 1,
    ) -> None:
        self.db = db
        self.files = files
        self.embeddings = embeddings
        self.keyword = keyword
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")

    def submit(self, store_id: str, file_id: str, attempt: int) -> None:
        self.pool.submit(self._run, store_id, file_id, attempt)

    def recover(self) -> None:
        with self.db() as s:
            pending = s.execute(
                select(
                    VectorStoreFileRow.vector_store_id,
                    VectorStoreFileRow.file_id,
                    VectorStoreFileRow.attempt,
                ).where(VectorStoreFileRow.status == "in_progress")
            ).all()
        for store_id, file_id, attempt in pending:
            self.submit(store_id, file_id, attempt)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _current(self, store_id: str, file_id: str, attempt: int) -> VectorStoreFileRow | None:
        with self.db() as s:
            row = s.get(VectorStoreFileRow, (store_id, file_id))
        if row is None or row.attempt != attempt or row.status != "in_progress":
            return None
        return row

    def _run(self, store_id: str, file_id: str, attempt: int) -> None:
        try:
            self._ingest(store_id, file_id, attempt)
        except DocumentError as e:
            self._fail(store_id, file_id, attempt, e.code, e.message)
        except NotFound:
            self._fail(
                store_id, file_id, attempt, "invalid_file", "The file was deleted before it was indexed."
            )
        except Exception as e:  # the poller must end; the log keeps the traceback
            log.exception("ingesting %s into %s failed", file_id, store_id)
            self._fail(store_id, file_id, attempt, "server_error", f"Indexing failed: {e}")

    def _ingest(self, store_id: str, file_id: str, attempt: int) -> None:
        row = self._current(store_id, file_id, attempt)
        if row is None:
            return
        with self.db() as s:
            store = s.get(VectorStoreRow, store_id)
        if store is None:
            return
        model = store.embedding_model
        file_row = self.files.get(row.project, file_id)
        text_ = extract_text(row.filename, self.files.path(file_row).read_bytes())
        tokenizer = self.embeddings.tokenizer(model)
        window = self.embeddings.max_tokens(model) - tokenizer.num_special_tokens_to_add()
        strategy = StaticStrategy(row.max_chunk_tokens, row.chunk_overlap_tokens).clamped(window)
        chunks = chunk_text(text_, tokenizer, strategy)
        parts = []
        for start in range(0, len(chunks), EMBED_BATCH):
            if start and self._current(store_id, file_id, attempt) is None:
                return  # cancelled, detached or re-attached: stop early
            batch = [c.text for c in chunks[start : start + EMBED_BATCH]]
            parts.append(np.asarray(self.embeddings.embed(model, batch), dtype=np.float32))
        vectors = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        self._commit(store_id, file_id, attempt, chunks, vectors)

    def _commit(
        self, store_id: str, file_id: str, attempt: int, chunks: list[Any], vectors: np.ndarray
    ) -> None:
        with write_transaction(self.db) as s:
            row = s.get(VectorStoreFileRow, (store_id, file_id))
            if row is None or row.attempt != attempt or row.status != "in_progress":
                return
            drop_chunks(s, self.keyword, store_id, file_id)
            rows = [
                ChunkRow(
                    vector_store_id=store_id,
                    file_id=file_id,
                    position=n,
                    text=c.text,
                    start_char=c.start,
                    end_char=c.end,
                    n_tokens=c.n_tokens,
                    embedding=vectors[n].tobytes(),
                )
                for n, c in enumerate(chunks)
            ]
            s.add_all(rows)
            s.flush()
            self.keyword.add(s, store_id, [(r.id, r.text) for r in rows])
            row.status = "completed"
            row.last_error_code = row.last_error_message = None
            row.usage_bytes = sum(len(r.text.encode()) + len(r.embedding) for r in rows)
            s.execute(
                update(VectorStoreRow)
                .where(VectorStoreRow.id == store_id)
                .values(index_version=VectorStoreRow.index_version + 1)
            )

    def _fail(self, store_id: str, file_id: str, attempt: int, code: str, message: str) -> None:
        with write_transaction(self.db) as s:
            row = s.get(VectorStoreFileRow, (store_id, file_id))
            if row is None or row.attempt != attempt or row.status != "in_progress":
                return
            row.status = "failed"
            row.last_error_code = code
            row.last_error_message = message
