"""Ranking a store on PostgreSQL: candidates from the database, the scores of ranking.py.

The exact path (`backend.ExactSearch`) scores every chunk of a store; here the
database proposes candidates and only those are scored, by the same functions:

    dense    the CANDIDATES nearest chunks by pgvector's HNSW index (the store's own
             rows only: pgvector 0.8's iterative index scan keeps walking the graph
             until enough of them pass the filter);
    keyword  every chunk whose tsvector holds a query term (GIN index). That is all
             the chunks BM25 gives a score to, so the keyword ranking is exact: the
             document frequencies come from these rows, the store's chunk count and
             average length from one aggregate per store version;
    hybrid   the union of the dense candidates and the CANDIDATES best keyword
             chunks, each scored by both sides (the cosine of a keyword-only
             candidate is computed in the database).

A candidate's dense score mixes in the cosine of its file's first chunk
(`ranking.with_document`), fetched for the candidates' files; the fused scores go
through `ranking.spread_files` exactly as on SQLite. What HNSW can miss is a chunk
outside every candidate list that would still have made the top k:
benchmarks/retrieval.py measures recall@10 against the exact path on the benchmark
corpora.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
from sqlalchemy import ARRAY, Integer, Text, bindparam, text
from sqlalchemy.orm import Session

from tunelab.retrieval.backend import Files, Ranked, StoreQuery
from tunelab.retrieval.index import StorePostings
from tunelab.retrieval.pgindex import TABLE, _vector_type, lexemes
from tunelab.retrieval.ranking import dense_scores, hybrid_scores, spread_files, with_document
from tunelab.retrieval.terms import encode_terms, query_terms, terms

# Candidates per requested result, and at least MIN_CANDIDATES: spread_files can
# reach deep into the raw ranking when one file holds many good chunks.
CANDIDATES_PER_RESULT = 10
MIN_CANDIDATES = 100
# hnsw.ef_search: the HNSW search's candidate list. pgvector returns at most this
# many rows per scan (before iterative scans), so it is at least the LIMIT.
MAX_EF_SEARCH = 1000


def _sql(statement: str, **types: Any) -> Any:
    return text(statement).bindparams(*(bindparam(k, type_=t) for k, t in types.items()))


_SETTINGS = _sql(
    "SELECT set_config('hnsw.ef_search', :ef, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)
# The chunks BM25 counts, as on SQLite (`index.indexed`): those of completed files (a
# long file's chunks are written while it is still being ingested).
_COMPLETED = (
    "file_id IN (SELECT file_id FROM vector_store_files "
    "WHERE vector_store_id = :store AND status = 'completed')"
)
_STATS = _sql(
    f"SELECT count(*), coalesce(avg(n_terms), 0), max(dims) FROM {TABLE} "
    f"WHERE vector_store_id = :store AND {_COMPLETED}"
)
_KEYWORD = _sql(
    f"SELECT i.chunk_id, i.file_id, i.n_terms, c.keyword_terms, "
    f"CASE WHEN c.keyword_terms IS NULL THEN c.text END "
    f"FROM {TABLE} i JOIN vector_store_chunks c ON c.id = i.chunk_id "
    f"WHERE i.vector_store_id = :store AND i.keywords @@ CAST(:query AS tsquery) "
    f"AND i.{_COMPLETED}"
)
_FILE_FILTERS = {
    "": "",
    "allowed": " AND file_id = ANY(:files)",
    "excluded": " AND file_id <> ALL(:files)",
}


def _nearest_statement(dims: int, file_filter: str) -> str:
    """The k nearest chunks of one store, with their cosine; the distance is the HNSW
    index's expression, so the planner can use the index (or, when the store's rows
    are few, read them through the store's b-tree and sort: exact)."""
    distance = f"(embedding::vector({dims})) <#> CAST(:q AS vector({dims}))"
    return (
        f"SELECT chunk_id, file_id, -({distance}) AS cos FROM {TABLE} "
        f"WHERE dims = {dims} AND vector_store_id = :store{_FILE_FILTERS[file_filter]} "
        f"ORDER BY {distance} LIMIT :k"
    )


@functools.cache
def _nearest_sql(dims: int, file_filter: str) -> Any:
    types = {"q": _vector_type()} | ({"files": ARRAY(Text)} if file_filter else {})
    return _sql(_nearest_statement(dims, file_filter), **types)


@functools.cache
def _candidates_sql(dims: int, file_filter: str) -> Any:
    """One round trip for a query's dense side: the nearest chunks, the `extra` chunks
    (the best keyword ones, for hybrid) with their cosine, and for each the cosine of
    its file's first chunk."""
    cosine = "-(embedding <#> CAST(:q AS vector))"
    statement = (
        f"WITH near AS MATERIALIZED ({_nearest_statement(dims, file_filter)}), "
        f"cand AS (SELECT chunk_id, file_id, cos FROM near UNION ALL "
        f"SELECT chunk_id, file_id, {cosine} FROM {TABLE} WHERE chunk_id = ANY(:extra) "
        f"AND chunk_id NOT IN (SELECT chunk_id FROM near)) "
        f"SELECT c.chunk_id, c.file_id, c.cos, (SELECT {cosine} FROM {TABLE} f "
        f"WHERE f.vector_store_id = :store AND f.file_id = c.file_id AND f.position = 0) "
        f"FROM cand c"
    )
    types = {"q": _vector_type(), "extra": ARRAY(Integer)}
    return _sql(statement, **types | ({"files": ARRAY(Text)} if file_filter else {}))


def tsquery(query: str) -> str | None:
    """The query's keyword terms OR-ed as a tsquery literal (None: it has none)."""
    words = lexemes(terms(query))
    if not words:
        return None
    return " | ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words)


class PgSearch:
    """StoreSearch over the chunk index in PostgreSQL (`pgindex.py`)."""

    def __init__(self) -> None:
        # Per store: (version, (chunks, average terms per chunk), vector length).
        self._stats: dict[str, tuple[int, tuple[int, float], int | None]] = {}
        self._lock = threading.Lock()

    def forget(self, store_id: str) -> None:
        with self._lock:
            self._stats.pop(store_id, None)

    def _store_stats(
        self, s: Session, store_id: str, version: int
    ) -> tuple[tuple[int, float], int | None]:
        cached = self._stats.get(store_id)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        n, avg, dims = s.execute(_STATS, {"store": store_id}).one()
        entry = (version, (int(n), float(avg)), None if dims is None else int(dims))
        with self._lock:
            self._stats[store_id] = entry
        return entry[1], entry[2]

    def rank(self, s: Session, store_id: str, version: int, q: StoreQuery, files: Files) -> Ranked:
        stats, dims = self._store_stats(s, store_id, version)
        if stats[0] == 0 or dims is None:
            return []
        n_candidates = max(CANDIDATES_PER_RESULT * q.k, MIN_CANDIDATES)
        if q.ranker != "keyword":
            s.execute(_SETTINGS, {"ef": str(min(max(n_candidates, 40), MAX_EF_SEARCH))})
        file_of: dict[int, str] = {}
        best: dict[int, float] = {}
        for qi, query in enumerate(q.queries):
            keyword: dict[int, float] = {}
            if q.keywords(qi):
                keyword = self._keyword(s, store_id, query, stats, files, file_of)
            if q.ranker == "keyword":
                scores = keyword
            else:
                scores = self._dense(
                    s, store_id, dims, q, qi, n_candidates, keyword, files, file_of
                )
            for cid, score in scores.items():
                if score > best.get(cid, 0.0):
                    best[cid] = score
        ids = sorted(best)  # by chunk id, as the exact path's rows: ties break alike
        codes: dict[str, int] = {}
        file_codes = np.array([codes.setdefault(file_of[c], len(codes)) for c in ids], np.int64)
        scores_arr = np.array([best[c] for c in ids], dtype=np.float32)
        rows, ranked = spread_files(scores_arr, file_codes, q.k)
        return [(float(v), ids[i], file_of[ids[i]]) for i, v in zip(rows, ranked, strict=True)]

    def _keyword(
        self,
        s: Session,
        store_id: str,
        query: str,
        stats: tuple[int, float],
        files: Files,
        file_of: dict[int, str],
    ) -> dict[int, float]:
        """BM25 (`StorePostings.scores`) of every chunk holding a query term."""
        literal = tsquery(query)
        if literal is None:
            return {}
        rows = s.execute(_KEYWORD, {"store": store_id, "query": literal}).all()
        if not rows:
            return {}
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        lengths = np.fromiter((r[2] for r in rows), dtype=np.float32, count=len(rows))
        blobs = [t if t is not None else encode_terms(x) for _, _, _, t, x in rows]
        postings = StorePostings.of_terms(ids, lengths, blobs, query_terms(query))
        hit, score = postings.scores(query, stats)
        out: dict[int, float] = {}
        for row, value in zip(hit, score, strict=True):
            cid, file_id = int(rows[row][0]), rows[row][1]
            if file_id in files.allowed:
                out[cid] = float(value)
                file_of[cid] = file_id
        return out

    def _dense(
        self,
        s: Session,
        store_id: str,
        dims: int,
        q: StoreQuery,
        qi: int,
        n_candidates: int,
        keyword: dict[int, float],
        files: Files,
        file_of: dict[int, str],
    ) -> dict[int, float]:
        """Dense (or, with keyword scores, hybrid) scores of the query's candidates."""
        assert q.vectors is not None
        params: dict[str, Any] = {"store": store_id, "q": q.vectors[qi], "k": n_candidates}
        if not files.excluded:
            mode = ""
        elif len(files.excluded) <= len(files.allowed):
            mode, params["files"] = "excluded", sorted(files.excluded)
        else:
            mode, params["files"] = "allowed", sorted(files.allowed)
        params["extra"] = []
        if q.ranker == "hybrid" and keyword:
            params["extra"] = sorted(keyword, key=lambda c: -keyword[c])[:n_candidates]
        ids: list[int] = []
        cosines: list[tuple[float, float]] = []  # (own, the file's first chunk's)
        for cid, file_id, cos, head in s.execute(_candidates_sql(dims, mode), params):
            if file_id in files.allowed:
                ids.append(cid)
                cosines.append((float(cos), float(cos if head is None else head)))
                file_of[cid] = file_id
        if not ids:
            return {}
        both = dense_scores(np.array(cosines, dtype=np.float32).T.ravel(), q.floor)
        # with_document's rows: the candidates, then the first chunk of each one's file.
        dense = with_document(both, len(ids) + np.arange(2 * len(ids)) % len(ids))[: len(ids)]
        if q.ranker == "hybrid":
            kw = np.array([keyword.get(c, 0.0) for c in ids], dtype=np.float32)
            dense = hybrid_scores(dense, kw, q.weight(qi))
        return {c: float(v) for c, v in zip(ids, dense, strict=True)}
