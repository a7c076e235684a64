"""Search over one or more vector stores: dense, keyword or hybrid, with filters.

Every chunk of each searched store is scored by the ranker (`ranking.py` defines the
scores, all in [0, 1]): exact cosine over the store's matrix, BM25 over its
postings, or their convex combination; a file's second, third... passages are then
discounted (`ranking.spread_files`) so that the first results cover several files.
A list of queries is searched query by query and each chunk keeps its best score.
Only files whose ingestion completed and whose attributes pass `filters` take part;
`score_threshold` drops weaker chunks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from tunelab import limits
from tunelab.db.base import Database
from tunelab.embeddings.protocol import Embedder, Vectors
from tunelab.errors import InvalidRequest
from tunelab.retrieval.filters import matches, validate_filter
from tunelab.retrieval.index import DenseIndex, KeywordIndex, StoreMatrix
from tunelab.retrieval.ranking import (
    UNRELATED,
    dense_scores,
    hybrid_scores,
    resolve_ranker,
    similarity_floor,
    spread_files,
    with_document,
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
        dense: DenseIndex,
        keyword: KeywordIndex,
    ) -> None:
        self.db = db
        self.stores = stores
        self.embeddings = embeddings
        self.dense = dense
        self.keyword = keyword
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

    def _eligible(
        self, s: Session, store: VectorStoreRow, filters: dict[str, Any] | None
    ) -> dict[str, tuple[str, dict[str, Any]]]:
        rows = s.execute(
            select(
                VectorStoreFileRow.file_id,
                VectorStoreFileRow.filename,
                VectorStoreFileRow.attributes_json,
            ).where(
                VectorStoreFileRow.vector_store_id == store.id,
                VectorStoreFileRow.status == "completed",
            )
        ).all()
        out = {}
        for file_id, filename, attrs_json in rows:
            attrs = json.loads(attrs_json) if attrs_json else {}
            if filters is None or matches(filters, attrs):
                out[file_id] = (filename, attrs)
        return out

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
                allowed = self._eligible(s, store, filters)
                eligible.update({(store.id, f): v for f, v in allowed.items()})
                if not allowed:
                    continue
                # The version read in this session's snapshot, so the indexes and the
                # eligible files all describe the same state.
                version = s.execute(
                    select(VectorStoreRow.index_version).where(VectorStoreRow.id == store.id)
                ).scalar_one()
                m = self.dense.matrix(s, store.id, version)
                model = store.embedding_model
                floor = floors.get(model, 0.0)
                scores = self._score(
                    s, store.id, version, m, queries, vectors.get(model), floor, ranker
                )
                if len(allowed) < len(m.files):
                    scores = np.where(m.mask(set(allowed)), scores, 0.0)
                rows, ranked = spread_files(scores, m.file_codes, max_results)
                for i, score in zip(rows, ranked, strict=True):
                    if score >= score_threshold:
                        cid = int(m.chunk_ids[i])
                        found.append((float(score), cid, store.id, m.files[m.file_codes[i]]))
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

    def _score(
        self,
        s: Session,
        store_id: str,
        version: int,
        m: StoreMatrix,
        queries: list[str],
        vectors: np.ndarray | None,
        floor: float,
        ranker: str,
    ) -> np.ndarray:
        """Each chunk's best score over the queries, aligned with the matrix rows."""
        best = np.zeros(len(m.chunk_ids), dtype=np.float32)
        if len(m.chunk_ids) == 0:
            return best
        postings = self.keyword.postings(s, store_id, version) if ranker != "dense" else None
        first_rows = m.first_rows if ranker != "keyword" else None
        for qi, query in enumerate(queries):
            keyword = np.zeros(len(m.chunk_ids), dtype=np.float32)
            if postings is not None:
                rows, kw = postings.scores(query)
                # The postings were loaded by their own query: map their rows onto
                # the matrix's by chunk id (the same ids unless a write came between).
                ids = postings.chunk_ids[rows]
                pos = np.minimum(np.searchsorted(m.chunk_ids, ids), len(m.chunk_ids) - 1)
                ok = m.chunk_ids[pos] == ids
                keyword[pos[ok]] = kw[ok]
            if ranker == "keyword":
                scores = keyword
            else:
                assert vectors is not None
                q = vectors[qi]
                assert first_rows is not None
                dense = with_document(dense_scores(m.matrix @ q, floor), first_rows)
                scores = dense if ranker == "dense" else hybrid_scores(dense, keyword)
            np.maximum(best, scores, out=best)
        return best
