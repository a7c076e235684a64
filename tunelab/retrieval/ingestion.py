"""Background ingestion: document -> text -> chunks -> vectors -> indexes.

Attaching a file only writes an `in_progress` row; the work is claimed from the
database (`claims.FileClaims`), so any API replica or `tunelab worker` on the same
database can index it, and exactly one does: the request returns at once (the SDK's
`upload_and_poll` / `create_and_poll` then poll), the process that attached the file
is woken at once, others poll. A file whose indexing was started MAX_CLAIMS times
(its indexer kept dying) fails with the reason instead of being retried forever.
Every path ends the file in `completed`, `failed` (with `last_error` saying why) or
leaves it `cancelled`, so the pollers always finish.

A file of up to EMBED_BATCH chunks is committed in one transaction together with the
`completed` status, and only if this process still holds the current attempt. A
longer one streams (`streaming.py`): EMBED_BATCH chunks at a time are read, embedded
and written, each write proving the claim is still held, and the last write marks it
`completed`; until then the indexes leave its chunks out (`index.py` loads the chunks
of completed files only), a failure or cancellation deletes them, and the next
attempt (or the process that takes the claim back) replaces them. So no file is ever
half-indexed, nor indexed twice, and ingestion holds a bounded part of a file in
memory whatever its size.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tunelab.db import holders
from tunelab.db.base import Database
from tunelab.embeddings.protocol import Embedder
from tunelab.errors import NotFound
from tunelab.files import FileStore
from tunelab.retrieval import streaming
from tunelab.retrieval.chunking import Chunk, StaticStrategy, fitted_header
from tunelab.retrieval.claims import Claim, FileClaims
from tunelab.retrieval.documents import DocumentError
from tunelab.retrieval.language import StoreModels, mostly_latin
from tunelab.retrieval.tables import ChunkRow, VectorStoreFileRow, VectorStoreRow
from tunelab.retrieval.terms import encode_terms

log = logging.getLogger(__name__)

# Chunks embedded per call (the embedding service sorts a call's texts by length into
# forward passes of FORWARD_TOKENS tokens, so a bigger call also groups lengths better).
EMBED_BATCH = 256
# Starts of one file's indexing before a file that keeps stopping its indexer fails.
# A start counts from the claim, and a server killed while it loads the embedding
# model (before touching the file) spends one too: 5 leaves room for a few restarts
# (tests/test_crash_recovery.py kills the server three times) before blaming the file.
MAX_CLAIMS = 5


def drop_chunks(s: Session, store_id: str, file_id: str | None) -> int:
    """Delete a file's (or, with None, the whole store's) chunks; returns how many."""
    where = [ChunkRow.vector_store_id == store_id]
    if file_id is not None:
        where.append(ChunkRow.file_id == file_id)
    ids = list(s.execute(select(ChunkRow.id).where(*where)).scalars())
    if ids:
        s.execute(delete(ChunkRow).where(*where))
        s.execute(
            update(VectorStoreRow)
            .where(VectorStoreRow.id == store_id)
            .values(index_version=VectorStoreRow.index_version + 1)
        )
    return len(ids)


@dataclass(eq=False)
class _Job(Claim):
    model: str = ""
    header: str = ""  # indexed with every chunk (`chunking.document_header`), never returned
    # The file's next chunks (at most EMBED_BATCH), and whether more are to come.
    chunks: list[Chunk] = field(default_factory=list)
    terms: list[bytes] = field(default_factory=list)  # each chunk's keyword terms
    vectors: list[np.ndarray] = field(default_factory=list)
    rest: Iterator[Chunk] = field(default_factory=lambda: iter(()))
    more: bool = False
    stored: int = 0  # chunks written so far (the next one's position)
    usage: int = 0  # their bytes, text and vector


class Ingestor:
    """One background thread that claims files from the database in groups.

    Texts embedded together run faster per text than a few at a time (MiniLM on the
    2-core machine: 64 short texts per call ~1.3x faster per text than 8, and 2.5x before
    the embedding worker ran packed tokens), and most files have only a few chunks, so the
    thread claims every waiting file (up to EMBED_BATCH chunks' worth), chunks them,
    embeds all their chunks together, and commits each file on its own.
    """

    def __init__(
        self,
        db: Database,
        files: FileStore,
        embeddings: Embedder,
        models: StoreModels,
        *,
        on_chunks: Callable[[Session, list[ChunkRow], list[str]], None] | None = None,
        poll_seconds: float = 1.0,
        stale_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.files = files
        self.embeddings = embeddings
        self.models = models
        self.poll_seconds = poll_seconds
        self.claims = FileClaims(db, stale_seconds=stale_seconds, clock=clock)
        # Called with new chunk rows (ids assigned) and the text their keyword terms
        # come from (header + chunk), in the transaction that writes them:
        # PostgreSQL's chunk index (`pgindex.py`) is written there.
        self.on_chunks = on_chunks
        # Chunking uses its own tokenizer copy (fast tokenizers are not thread-safe).
        self._tokenizers: dict[str, Any] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat = holders.Heartbeat(
            self.claims.beat, every=min(poll_seconds, stale_seconds / 3), name="ingest-heartbeat"
        )

    def wake(self) -> None:
        """A file was attached here: look for work now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ingest", daemon=True)
        self._thread.start()
        self._heartbeat.start()

    def close(self) -> None:
        """Stop after the current group and let go of what this process still holds
        (another process, or this one at its next start, picks it up)."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
            self._heartbeat.stop()
            self.claims.release_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.step():
                    continue
            except Exception:  # a database hiccup must not end ingestion; the next poll retries
                log.exception("ingestion step failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def step(self) -> bool:
        """Take back stale claims, then claim, index and commit one group of files;
        False when there was nothing to do."""
        self.claims.recover_stale()
        group: list[_Job] = []
        while sum(len(j.chunks) for j in group) < EMBED_BATCH and not self._stop.is_set():
            job = self._claim()
            if job is None:
                break
            if self._guarded(job, self._prepare):
                group.append(job)
            elif not group:
                return True  # that one needed no embedding; look again
        if not group:
            return False
        self._embed(group)
        for done in group:
            self._guarded(done, self._finish)
        return True

    def _claim(self) -> _Job | None:
        """The next file to index, claimed; a file whose indexing stopped its indexer
        MAX_CLAIMS times fails instead, with the reason."""
        while (taken := self.claims.take()) is not None:
            claim, before = taken
            job = _Job(claim.store_id, claim.file_id, claim.attempt)
            if before < MAX_CLAIMS:
                return job
            self._fail(
                job,
                "server_error",
                f"Indexing this file stopped unexpectedly {before} times; it was given up. "
                "Check the server logs, then attach the file again.",
            )
        return None

    def _guarded(self, job: _Job, step: Any) -> bool:
        """Run one step for a job; a failure ends that file `failed` with the reason."""
        try:
            return bool(step(job))
        except DocumentError as e:
            self._fail(job, e.code, e.message)
        except NotFound:
            self._fail(job, "invalid_file", "The file was deleted before it was indexed.")
        except Exception as e:  # the poller must end; the log keeps the traceback
            log.exception("ingesting %s into %s failed", job.file_id, job.store_id)
            self._fail(job, "server_error", f"Indexing failed: {e}")
        return False

    def _tokenizer(self, model: str) -> Any:
        if model not in self._tokenizers:
            self._tokenizers[model] = self.embeddings.tokenizer(model)  # a private copy
        return self._tokenizers[model]

    def _prepare(self, job: _Job) -> bool:
        """Extract and chunk; False when the file no longer needs indexing."""
        row = self.claims.current(job)
        if row is None:
            return False
        with self.db() as s:
            store = s.get(VectorStoreRow, job.store_id)
        if store is None:
            return False
        file_row = self.files.get(row.project, job.file_id)
        pieces = streaming.document_text(row.filename, self.files.path(file_row), file_row.bytes)
        first, ended = streaming.fill("", pieces, streaming.WINDOW_CHARS)
        if not first:
            raise DocumentError("invalid_file", f"'{row.filename}' contains no text to index.")
        model = store.embedding_model or self._settle_model(job.store_id, first)
        if model is None:
            return False  # the store was deleted meanwhile
        if store.mostly_latin is None:
            self._settle_script(job.store_id, first)
        job.model = model
        tokenizer = self._tokenizer(job.model)
        window = self.embeddings.max_tokens(job.model) - tokenizer.num_special_tokens_to_add()
        # The header comes from the document's start (its name, first line, NAME line),
        # which the first window holds.
        job.header, header_tokens = fitted_header(row.filename, first, tokenizer, window)
        strategy = StaticStrategy(row.max_chunk_tokens, row.chunk_overlap_tokens).clamped(
            window - header_tokens
        )
        job.rest = streaming.stream_chunks(first, ended, pieces, tokenizer, strategy)
        self._next_chunks(job)
        return True

    def _next_chunks(self, job: _Job) -> None:
        """Read the file's next EMBED_BATCH chunks (or fewer, at its end)."""
        job.chunks = [c for _, c in zip(range(EMBED_BATCH), job.rest, strict=False)]
        job.terms = [encode_terms(job.header + c.text) for c in job.chunks]
        job.vectors = []
        job.more = len(job.chunks) == EMBED_BATCH and self._peek(job)

    @staticmethod
    def _peek(job: _Job) -> bool:
        """Whether the file has chunks after these (a file of exactly EMBED_BATCH
        chunks is committed at once, like any smaller one)."""
        nxt = next(job.rest, None)
        if nxt is None:
            return False
        job.rest = itertools.chain([nxt], job.rest)
        return True

    def _settle_model(self, store_id: str, text: str) -> str | None:
        """The model of a store whose first document this is (`language.StoreModels`).

        Set only while the store has none, in one statement, so when two processes
        index two first documents at once, both use whichever model was stored first.
        """
        with self.db.begin() as s:
            s.execute(
                update(VectorStoreRow)
                .where(VectorStoreRow.id == store_id, VectorStoreRow.embedding_model == "")
                .values(embedding_model=self.models.for_text(text))
            )
        with self.db() as s:
            model = s.execute(
                select(VectorStoreRow.embedding_model).where(VectorStoreRow.id == store_id)
            ).scalar_one_or_none()
        return None if model is None else str(model)

    def _settle_script(self, store_id: str, text: str) -> None:
        """Record the script of a store's first document (`VectorStoreRow.mostly_latin`),
        only while none is recorded: the first document to get here decides."""
        with self.db.begin() as s:
            s.execute(
                update(VectorStoreRow)
                .where(VectorStoreRow.id == store_id, VectorStoreRow.mostly_latin.is_(None))
                .values(mostly_latin=mostly_latin(text))
            )

    def _embed(self, group: list[_Job]) -> None:
        """Embed the group's chunks EMBED_BATCH at a time, dropping files cancelled meanwhile."""
        items = [(job, n) for job in group for n in range(len(job.chunks))]
        live = set(group)
        for start in range(0, len(items), EMBED_BATCH):
            if start:
                live = {job for job in live if self.claims.current(job) is not None}
            part = [(job, n) for job, n in items[start : start + EMBED_BATCH] if job in live]
            for model in {job.model for job, _ in part}:
                texts = [job.header + job.chunks[n].text for job, n in part if job.model == model]
                try:
                    vectors = np.asarray(
                        self.embeddings.embed(model, texts, kind="passage"), dtype=np.float32
                    )
                except Exception as e:
                    log.exception("embedding chunks with %s failed", model)
                    for job in {job for job, _ in part if job.model == model}:
                        self._fail(job, "server_error", f"Embedding failed: {e}")
                        live.discard(job)
                    continue
                rows = iter(vectors)
                for job, _ in part:
                    if job.model == model:
                        job.vectors.append(next(rows))

    def _finish(self, job: _Job) -> bool:
        """Write the embedded chunks; for a long file, read, embed and write the rest."""
        while True:
            if not self._store(job, final=not job.more):
                return False
            if not job.more:
                return True
            if self._stop.is_set():
                return False  # still claimed until close lets go: another process redoes it
            self._next_chunks(job)
            self._embed([job])

    def _store(self, job: _Job, *, final: bool) -> bool:
        """Write `job.chunks` (and, when `final`, mark the file `completed`), if the
        attempt is still current; else drop what this attempt wrote."""
        if len(job.vectors) != len(job.chunks):
            return False  # cancelled or failed while embedding
        with self.db.begin() as s:
            # The claim's UPDATE locks the row (on PostgreSQL), so a detach, cancel or
            # take-back waits for this write; the last write also lets go of the claim.
            row = self.claims.release(s, job) if final else self.claims.hold(s, job)
            if row is None:
                # Cancelled midway: drop what this attempt wrote. Never while the file is
                # still in_progress: another process holds it now, with its own chunks.
                now = s.get(VectorStoreFileRow, (job.store_id, job.file_id))
                cancelled = now is not None and now.attempt == job.attempt
                if job.stored and cancelled and now is not None and now.status != "in_progress":
                    drop_chunks(s, job.store_id, job.file_id)
                return False
            if not job.stored:  # a previous attempt's chunks, complete or not
                drop_chunks(s, job.store_id, job.file_id)
            rows = [
                ChunkRow(
                    vector_store_id=job.store_id,
                    file_id=job.file_id,
                    position=job.stored + n,
                    text=c.text,
                    start_char=c.start,
                    end_char=c.end,
                    n_tokens=c.n_tokens,
                    embedding=job.vectors[n].tobytes(),
                    keyword_terms=job.terms[n],
                )
                for n, c in enumerate(job.chunks)
            ]
            s.add_all(rows)
            if self.on_chunks is not None:
                s.flush()
                self.on_chunks(s, rows, [job.header + c.text for c in job.chunks])
            job.stored += len(rows)
            job.usage += sum(len(r.text.encode()) + len(r.embedding) for r in rows)
            if not final:
                return True
            row.status = "completed"
            row.last_error_code = row.last_error_message = None
            row.usage_bytes = job.usage
            s.execute(
                update(VectorStoreRow)
                .where(VectorStoreRow.id == job.store_id)
                .values(index_version=VectorStoreRow.index_version + 1)
            )
        return True

    def _fail(self, job: _Job, code: str, message: str) -> None:
        with self.db.begin() as s:
            row = self.claims.release(s, job)
            if row is None:
                return
            if job.stored:
                drop_chunks(s, job.store_id, job.file_id)  # what this attempt wrote
            row.status = "failed"
            row.last_error_code = code
            row.last_error_message = message
