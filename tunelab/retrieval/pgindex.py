"""The chunk index of vector stores on PostgreSQL: pgvector HNSW and full-text keywords.

On PostgreSQL every chunk has a row in `vector_store_chunk_index` (migration 0011),
written in the same transaction as the chunk and deleted with it (ON DELETE
CASCADE), so every server process sharing the database searches the same,
committed state and nothing is held in RAM per store:

- `embedding`: the chunk's L2-normalised vector; an HNSW index (inner product, i.e.
  cosine for unit vectors) per vector length answers nearest-neighbour queries.
  HNSW indexes one length, so each length gets a partial index `WHERE dims = n`;
  the migration makes the one for 384, `ensure_hnsw` the others on first write.
- `keywords`: the chunk's keyword terms (`terms.terms`: jieba-segmented Chinese,
  Latin words, kana/hangul bigrams; the words the SQLite path's BM25 counts) as a
  tsvector made from the lexemes themselves (`array_to_tsvector`), so PostgreSQL's
  own parser and dictionaries never re-split them and Chinese matches word for
  word; a GIN index finds the chunks holding a query's terms.
- `n_terms`: the chunk's length in terms, from which BM25's average length comes.

Ranking over these is `pgsearch.PgSearch`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import ARRAY, Text, bindparam, select, text
from sqlalchemy.orm import Session

from tunelab.db.base import Database
from tunelab.retrieval.tables import ChunkRow
from tunelab.retrieval.terms import terms

log = logging.getLogger(__name__)

TABLE = "vector_store_chunk_index"
# PostgreSQL refuses a tsvector lexeme of 2 KB or more ("word is too long"); such a
# "word" (a base64 blob, say) is left out of the keyword index, and of queries.
MAX_LEXEME_BYTES = 2046
# pgvector's HNSW indexes vectors of at most 2000 dimensions; longer ones are
# searched exactly (a scan of the store's rows).
HNSW_MAX_DIMS = 2000
# Serialises CREATE INDEX across processes: two replicas writing the first store of
# a new vector length at once would otherwise race on the index's name.
_DDL_LOCK = 0x74_6C_68_6E  # "tlhn"


def lexemes(words: Iterable[str]) -> list[str]:
    """The distinct keyword terms PostgreSQL can hold in a tsvector."""
    return sorted({w for w in words if len(w.encode("utf-8")) <= MAX_LEXEME_BYTES})


def hnsw_name(dims: int) -> str:
    return f"ix_{TABLE}_hnsw_{dims}"


def _vector_type() -> Any:  # pgvector's SQLAlchemy type; untyped third-party class
    from pgvector.sqlalchemy import VECTOR

    return VECTOR()


def _insert_sql() -> Any:
    return text(
        f"INSERT INTO {TABLE} (chunk_id, vector_store_id, file_id, position, dims, "
        "embedding, keywords, n_terms) VALUES (:chunk_id, :vector_store_id, :file_id, "
        ":position, :dims, :embedding, array_to_tsvector(:lexemes), :n_terms) "
        "ON CONFLICT (chunk_id) DO NOTHING"
    ).bindparams(
        bindparam("embedding", type_=_vector_type()),
        bindparam("lexemes", type_=ARRAY(Text)),
    )


class PgChunkIndex:
    """Writes the index rows of new chunks, and indexes chunks that have none."""

    def __init__(self) -> None:
        self._hnsw: set[int] = set()  # lengths known to have their HNSW index
        self._lock = threading.Lock()
        self._insert = _insert_sql()

    def add(self, s: Session, rows: list[ChunkRow], texts: list[str] | None = None) -> None:
        """Index `rows` (flushed: ids assigned) in the caller's transaction; `texts`:
        what each row's keyword terms were taken from (default: its text)."""
        if not rows:
            return
        params = []
        lengths = set()
        for r, keyword_text in zip(rows, texts or [r.text for r in rows], strict=True):
            vector = np.frombuffer(r.embedding, dtype=np.float32)
            lengths.add(len(vector))
            words = terms(keyword_text)
            params.append(
                {
                    "chunk_id": r.id,
                    "vector_store_id": r.vector_store_id,
                    "file_id": r.file_id,
                    "position": r.position,
                    "dims": len(vector),
                    "embedding": vector,
                    "lexemes": lexemes(words),
                    "n_terms": len(words),
                }
            )
        for dims in lengths:
            self.ensure_hnsw(s, dims)
        s.execute(self._insert, params)

    def ensure_hnsw(self, s: Session, dims: int) -> None:
        """Create the HNSW index for vectors of `dims` if no process has yet.

        In the caller's transaction (a second connection would wait for this one's
        locks): other writers wait while the index is built, which happens once per
        vector length, when the table holds no vectors of that length yet.
        """
        if dims in self._hnsw:
            return
        if dims > HNSW_MAX_DIMS:
            log.warning("%d-dimensional vectors have no HNSW index: searched exactly", dims)
        else:
            exists = s.execute(
                text("SELECT 1 FROM pg_class WHERE relname = :name"), {"name": hnsw_name(dims)}
            ).scalar()
            if not exists:
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK})
                s.execute(
                    text(
                        f"CREATE INDEX IF NOT EXISTS {hnsw_name(dims)} ON {TABLE} USING hnsw "
                        f"((embedding::vector({dims})) vector_ip_ops) WHERE dims = {dims}"
                    )
                )
        with self._lock:
            self._hnsw.add(dims)

    def catch_up(self, db: Database, batch: int = 256) -> int:
        """Index the chunks that have no index row (written before migration 0011).

        Safe to run in several processes at once (a row indexed twice is skipped).
        Returns how many chunks this call indexed.
        """
        done = 0
        missing = (
            select(ChunkRow)
            .where(~ChunkRow.id.in_(select(text("chunk_id")).select_from(text(TABLE))))
            .order_by(ChunkRow.id)
            .limit(batch)
        )
        while True:
            with db.begin() as s:
                rows = list(s.execute(missing).scalars())
                self.add(s, rows)
            done += len(rows)
            if len(rows) < batch:
                if done:
                    log.info("indexed %d chunks written before the pgvector index", done)
                return done
