"""The retrieval feature assembled: indexes, background ingestion, stores, search.

Built by the runtime (and by `benchmarks/retrieval.py`, so both run exactly the
same indexes, ingestion and search).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.db.base import Database
from tunelab.embeddings.protocol import Embedder
from tunelab.files import FileStore
from tunelab.retrieval.index import DenseIndex, KeywordIndex
from tunelab.retrieval.ingestion import Ingestor
from tunelab.retrieval.language import StoreModels
from tunelab.retrieval.search import Searcher
from tunelab.retrieval.stores import VectorStores


@dataclass
class Retrieval:
    stores: VectorStores
    searcher: Searcher
    ingestor: Ingestor

    def start(self) -> None:
        """Start ingesting (files are claimed from the database, whoever attached them)."""
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
    keyword = KeywordIndex()
    dense = DenseIndex()
    ingestor = Ingestor(
        db,
        files,
        embedder,
        keyword,
        models,
        poll_seconds=poll_seconds,
        stale_seconds=stale_seconds,
    )
    stores = VectorStores(db, files, ingestor, dense, keyword, models)
    searcher = Searcher(db, stores, embedder, dense, keyword)
    files.on_delete.append(stores.on_file_deleted)
    return Retrieval(stores, searcher, ingestor)
