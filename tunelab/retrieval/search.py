"""Search over one or more vector stores: dense, keyword or hybrid, with filters.

Each searched store's chunks are ranked by a `backend.StoreSearch` (exact in RAM on
SQLite, pgvector + full-text search on PostgreSQL) with the scores of `ranking.py`,
all in [0, 1]: cosine, BM25, or their convex combination (dense alone for a query
in another script than the store's, `ranking.keyword_weight`); a file's second, third...
passages are discounted (`ranking.spread_files`) so that the first results cover
several files. A list of queries is searched query by query and each chunk keeps
its best score. Only files whose ingestion completed and whose attributes pass
`filters` take part; `score_threshold` drops weaker chunks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunelab import limits
from tunelab.db.base import Database
from tunelab.embeddings.protocol import Embedder, Vectors
from tunelab.errors import InvalidRequest
from tunelab.retrieval.backend import Files, StoreQuery, StoreSearch
from tunelab.retrieval.filters import matches, validate_filter
from tunelab.retrieval.ranking import (
    UNRELATED,
    keyword_weight,
    resolve_ranker,
    similarity_floor,
)
from tunelab.retrieval.stores import VectorStores
from tunelab.retrieval.tables import ChunkRow, VectorStoreFileRow, VectorStoreRow


@dataclass
class Hit:
    chunk_id: int
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any]
    text: str = ""
    vector_store_id: str = ""


class Searcher:
    def __init__(
        self,
        db: Database,
        stores: VectorStores,
        embeddings: Embedder,
        backend: StoreSearch,
    ) -> None:
        self.db = db
        self.stores = stores
        self.embeddings = embeddings
        self.backend = backend
        self._floors: dict[str, float] = {}

    def search_stores(
        self,
        project: str,
        store_ids: list[str],
        queries: list[str],
        *,
        max_results: int = 10,
        filters: dict[str, Any] | None = None,
        ranker: str | None = None,
        score_threshold: float = 0.0,
    ) -> list[Hit]:
        """Validate, check access (404 for another project's store) and search."""
        if len(queries) > limits.MAX_SEARCH_QUERIES:
            raise InvalidRequest(
                f"query holds {len(queries)} queries; at most {limits.MAX_SEARCH_QUERIES} "
                "are searched per request.",
                param="query",
            )
        for q in queries:
            limits.text(q, "query", max_chars=limits.MAX_QUERY_CHARS)
        queries = [q for q in queries if q.strip()]
        if not queries:
            raise InvalidRequest(
                "query must be a non-empty string or list of strings.", param="query"
            )
        if not 1 <= max_results <= 50:
            raise InvalidRequest("max_num_results must be from 1 to 50.", param="max_num_results")
        if filters is not None:
            validate_filter(filters)
        mode = resolve_ranker(ranker)
        stores = self.stores.touch_for_search(project, store_ids)
        return self.search(
            stores,
            queries,
            max_results=max_results,
            filters=filters,
            ranker=mode,
            score_threshold=score_threshold,
        )

    def _files(
        self, s: Session, store: VectorStoreRow, filters: dict[str, Any] | None
    ) -> tuple[dict[str, tuple[str, dict[str, Any]]], Files]:
        """The store's files a search may return (indexed and passing `filters`), with
        their names and attributes, and as the backend's `Files`."""
        rows = s.execute(
            select(
                VectorStoreFileRow.file_id,
                VectorStoreFileRow.filename,
                VectorStoreFileRow.attributes_json,
                VectorStoreFileRow.status,
            ).where(VectorStoreFileRow.vector_store_id == store.id)
        ).all()
        out = {}
        excluded = set()
        for file_id, filename, attrs_json, status in rows:
            attrs = json.loads(attrs_json) if attrs_json else {}
            if status == "completed" and (filters is None or matches(filters, attrs)):
                out[file_id] = (filename, attrs)
            else:
                excluded.add(file_id)
        return out, Files(set(out), excluded)

    def search(
        self,
        stores: list[VectorStoreRow],
        queries: list[str],
        *,
        max_results: int = 10,
        filters: dict[str, Any] | None = None,
        ranker: str = "hybrid",
        score_threshold: float = 0.0,
    ) -> list[Hit]:
        """The best chunks for `queries` across `stores` (already checked for access)."""
        found: list[tuple[float, int, str, str]] = []  # (score, chunk id, store id, file id)
        eligible: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        # Queries are embedded before the read session opens: no model work while
        # a database snapshot is held.
        vectors: dict[str, Vectors] = {}
        floors: dict[str, float] = {}
        if ranker != "keyword":
            # A store whose model is still "" has indexed nothing yet (`language.py`).
            for model in dict.fromkeys(s.embedding_model for s in stores if s.embedding_model):
                vectors[model] = self.embeddings.embed(model, queries)
                floors[model] = self._floor(model)
        with self.db() as s:
            for store in stores:
                if not store.embedding_model:
                    continue
                allowed, files = self._files(s, store, filters)
                eligible.update({(store.id, f): v for f, v in allowed.items()})
                if not allowed:
                    continue
                # The version read in this session's snapshot, so the indexes and the
                # eligible files all describe the same state.
                version = s.execute(
                    select(VectorStoreRow.index_version).where(VectorStoreRow.id == store.id)
                ).scalar_one()
                model = store.embedding_model
                weights = tuple(keyword_weight(x, store.mostly_latin) for x in queries)
                q = StoreQuery(
                    queries,
                    vectors.get(model),
                    floors.get(model, 0.0),
                    ranker,
                    max_results,
                    weights,
                )
                for score, cid, file_id in self.backend.rank(s, store.id, version, q, files):
                    if score >= score_threshold:
                        found.append((score, cid, store.id, file_id))
            found.sort(key=lambda x: (-x[0], x[1]))
            found = found[:max_results]
            texts = dict(
                s.execute(
                    select(ChunkRow.id, ChunkRow.text).where(ChunkRow.id.in_([x[1] for x in found]))
                ).all()
            )
        hits = []
        for score, cid, store_id, file_id in found:
            filename, attrs = eligible[(store_id, file_id)]
            hits.append(Hit(cid, file_id, filename, score, attrs, texts.get(cid, ""), store_id))
        return hits

    def _floor(self, model: str) -> float:
        """The model's similarity floor (`ranking.similarity_floor`), computed once."""
        if model not in self._floors:
            self._floors[model] = similarity_floor(
                self.embeddings.embed(model, UNRELATED),
                self.embeddings.embed(model, UNRELATED, kind="passage"),
            )
        return self._floors[model]
