"""The retrieval feature wired together from the core services.

Used by the vector_stores routes at startup and by `benchmarks/retrieval.py`, so
both run exactly the same indexes, ingestion and search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.retrieval.index import DenseIndex, KeywordIndex
from tunelab.retrieval.ingestion import Ingestor
from tunelab.retrieval.search import Searcher
from tunelab.retrieval.stores import VectorStores


@dataclass
class Retrieval:
    stores: VectorStores
    searcher: Searcher
    ingestor: Ingestor

    def close(self) -> None:
        self.ingestor.close()


def build_retrieval(services: Any) -> Retrieval:
    """Indexes, an ingestion pool and search over `services` (db, files, embeddings).

    The keyword index shares the main database when it is SQLite; otherwise it is a
    SQLite file under vectors_dir. Deleting a File drops its chunks from every store,
    and files whose ingestion a restart interrupted are queued again.
    """
    settings = services.settings
    shared = settings.db_url.startswith("sqlite")
    keyword = KeywordIndex(None if shared else settings.vectors_dir / "keywords.sqlite")
    dense = DenseIndex()
    ingestor = Ingestor(services.db, services.files, services.embeddings, keyword)
    stores = VectorStores(
        services.db,
        services.files,
        ingestor,
        dense,
        keyword,
        services.registry.default_embedding_model,  # resolved: a concrete model id
    )
    searcher = Searcher(services.db, stores, services.embeddings, dense, keyword)
    services.files.on_delete.append(stores.on_file_deleted)
    ingestor.recover()
    return Retrieval(stores, searcher, ingestor)
