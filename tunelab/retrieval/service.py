"""The retrieval feature assembled: indexes, background ingestion, stores, search.

Built by the runtime (and by `benchmarks/retrieval.py`, so both run exactly the
same indexes, ingestion and search). The database decides the search backend
(`backend.py`): exact search in RAM on SQLite, pgvector and full-text search in
the database on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.db.base import Database
from tunelab.embeddings.protocol import Embedder
from tunelab.files import FileStore
from tunelab.retrieval.backend import ExactSearch, StoreSearch
from tunelab.retrieval.index import DenseIndex, KeywordIndex
from tunelab.retrieval.ingestion import Ingestor
from tunelab.retrieval.language import StoreModels
from tunelab.retrieval.search import Searcher
from tunelab.retrieval.stores import VectorStores

if TYPE_CHECKING:  # imported when used: pgvector is installed for PostgreSQL only
    from tunelab.retrieval.pgindex import PgChunkIndex


@dataclass
class Retrieval:
    stores: VectorStores
    searcher: Searcher
    ingestor: Ingestor
    chunk_index: PgChunkIndex | None = None  # PostgreSQL only

    def start(self) -> None:
        """Index what an older version left unindexed, then start ingesting (files
        are claimed from the database, whoever attached them)."""
        if self.chunk_index is not None:
            self.chunk_index.catch_up(self.stores.db)
        self.ingestor.start()

    def close(self) -> None:
        self.ingestor.close()


def build_retrieval(
    db: Database,
    files: FileStore,
    embedder: Embedder,
    *,
    models: StoreModels,
    poll_seconds: float = 1.0,
    stale_seconds: float = 30.0,
) -> Retrieval:
    """Indexes, ingestion and search over `db`, `files` and `embedder`.

    Deleting a File drops its chunks from every store. Ingestion polls the database
    every `poll_seconds` and takes back claims whose heartbeat is `stale_seconds` old.
    """
    backend: StoreSearch
    if db.dialect == "postgresql":
        from tunelab.retrieval.pgindex import PgChunkIndex
        from tunelab.retrieval.pgsearch import PgSearch

        chunk_index: PgChunkIndex | None = PgChunkIndex()
        backend = PgSearch()
    else:
        chunk_index = None
        backend = ExactSearch(DenseIndex(), KeywordIndex())
    ingestor = Ingestor(
        db,
        files,
        embedder,
        models,
        on_chunks=chunk_index.add if chunk_index else None,
        poll_seconds=poll_seconds,
        stale_seconds=stale_seconds,
    )
    stores = VectorStores(db, files, ingestor, backend, models)
    searcher = Searcher(db, stores, embedder, backend)
    files.on_delete.append(stores.on_file_deleted)
    return Retrieval(stores, searcher, ingestor, chunk_index)
