"""Search over one or more vector stores: dense, keyword or hybrid, with filters.

Rankers (`ranking_options.ranker`):
  auto, default-2024-11-15, hybrid  dense + keyword lists fused by reciprocal rank
  none, dense                       dense cosine only (score = cosine clipped to [0, 1])
  keyword                           FTS5 bm25 only (score = bm25 squashed into [0, 1))

A list of queries is searched query by query and every list is fused together (the
dense / keyword rankers keep each chunk's best score). Only files whose ingestion
completed and whose attributes pass `filters` take part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunelab.db.base import Database
from tunelab.embeddings.protocol import Embedder, Vectors
from tunelab.errors import InvalidRequest
from tunelab.retrieval.filters import matches, validate_filter
from tunelab.retrieval.index import DenseIndex, KeywordIndex, reciprocal_rank_fusion
from tunelab.retrieval.stores import VectorStores
from tunelab.retrieval.tables import ChunkRow, VectorStoreFileRow, VectorStoreRow

RANKERS = {
    "auto": "hybrid",
    "default-2024-11-15": "hybrid",
    "hybrid": "hybrid",
    "none": "dense",
    "dense": "dense",
    "keyword": "keyword",
}
# Each list contributes this many candidates to the fusion; filters that exclude
# most of a store get a deeper keyword list so matches are not cut off early.
POOL = 50
FILTERED_POOL = 500


@dataclass
class Hit:
    chunk_id: int
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any]
    text: str = ""
    vector_store_id: str = ""


def resolve_ranker(ranker: str | None) -> str:
    if ranker is None:
        return "hybrid"
    if ranker not in RANKERS:
        raise InvalidRequest(
            f"ranking_options.ranker must be one of {', '.join(RANKERS)}, not {ranker!r}.",
            param="ranking_options.ranker",
        )
    return RANKERS[ranker]


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
        # One dense and one keyword list per query, each merged across the stores.
        dense_lists: list[list[tuple[int, float]]] = [[] for _ in queries]
        keyword_lists: list[list[tuple[int, float]]] = [[] for _ in queries]
        owner: dict[int, tuple[str, str]] = {}  # chunk id -> (store id, file id)
        eligible: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        # Queries are embedded before the read session opens: no model work while
        # a database snapshot is held.
        vectors: dict[str, Vectors] = {}
        if ranker in ("hybrid", "dense"):
            for model in dict.fromkeys(store.embedding_model for store in stores):
                vectors[model] = self.embeddings.embed(model, queries)
        with self.db() as s:
            for store in stores:
                allowed = self._eligible(s, store, filters)
                eligible.update({(store.id, f): v for f, v in allowed.items()})
                if not allowed:
                    continue
                # The version read in this session's snapshot, so the matrix, the
                # keyword index and the eligible files all describe the same state.
                version = s.execute(
                    select(VectorStoreRow.index_version).where(VectorStoreRow.id == store.id)
                ).scalar_one()
                m = self.dense.matrix(s, store.id, version)
                narrowed = len(allowed) < len(m.files)
                mask = m.mask(set(allowed)) if narrowed else None
                found: list[tuple[int, list[tuple[int, float]]]] = []  # (list no, hits)
                if ranker in ("hybrid", "dense"):
                    for qi, q in enumerate(vectors[store.embedding_model]):
                        found.append((qi, self.dense.search(m, q, POOL, mask)))
                if ranker in ("hybrid", "keyword"):
                    pool = FILTERED_POOL if narrowed else POOL
                    for qi, query in enumerate(queries):
                        found.append(
                            (len(queries) + qi, self.keyword.search(s, store.id, query, pool))
                        )
                for list_no, hits in found:
                    files = m.file_of(cid for cid, _ in hits)
                    kept = [(h, f) for h, f in zip(hits, files) if f in allowed]
                    owner.update((cid, (store.id, f)) for (cid, _), f in kept if f is not None)
                    target = dense_lists if list_no < len(queries) else keyword_lists
                    target[list_no % len(queries)].extend(h for h, _ in kept)
            ranked = self._rank(_best(dense_lists), _best(keyword_lists), ranker)
            ranked = [(cid, sc) for cid, sc in ranked if sc >= score_threshold][:max_results]
            texts = dict(
                s.execute(
                    select(ChunkRow.id, ChunkRow.text).where(
                        ChunkRow.id.in_([cid for cid, _ in ranked])
                    )
                ).all()
            )
        hits = []
        for cid, score in ranked:
            store_id, file_id = owner[cid]
            filename, attrs = eligible[(store_id, file_id)]
            hits.append(Hit(cid, file_id, filename, score, attrs, texts.get(cid, ""), store_id))
        return hits

    @staticmethod
    def _rank(
        dense_lists: list[list[tuple[int, float]]],
        keyword_lists: list[list[tuple[int, float]]],
        ranker: str,
    ) -> list[tuple[int, float]]:
        if ranker == "hybrid":
            return reciprocal_rank_fusion(
                [[cid for cid, _ in lst] for lst in dense_lists + keyword_lists]
            )
        best: dict[int, float] = {}
        for lst in dense_lists if ranker == "dense" else keyword_lists:
            for cid, sc in lst:
                best[cid] = max(best.get(cid, 0.0), min(max(sc, 0.0), 1.0))
        return sorted(best.items(), key=lambda x: (-x[1], x[0]))


def _best(lists: list[list[tuple[int, float]]]) -> list[list[tuple[int, float]]]:
    """Each list sorted best first and cut to the pool size (lists span several stores)."""
    return [sorted(lst, key=lambda x: -x[1])[:POOL] for lst in lists]
