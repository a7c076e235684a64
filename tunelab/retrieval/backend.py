"""How one store's chunks are ranked for a search: the seam between search and indexes.

`search.Searcher` checks access, embeds the queries and picks the files a search may
see; a `StoreSearch` ranks one store's chunks for it, by the scores of `ranking.py`
and with `ranking.spread_files`, and returns the best. Two implementations:

    ExactSearch  (SQLite, the embedded default) every chunk scored: exact cosine over
                 the store's matrix and BM25 over its postings, both cached in RAM
                 per store version (`index.py`).
    PgSearch     (PostgreSQL, `pgsearch.py`) candidates from pgvector's HNSW index and
                 full-text search in the database, scored by the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy.orm import Session

from tunelab.retrieval.index import DenseIndex, KeywordIndex, StoreMatrix
from tunelab.retrieval.ranking import (
    KEYWORD_WEIGHT,
    dense_scores,
    hybrid_scores,
    spread_files,
    with_document,
)

# (score, chunk id, file id), best first
Ranked = list[tuple[float, int, str]]


@dataclass(frozen=True)
class StoreQuery:
    """What each store of one search is searched for."""

    queries: list[str]
    vectors: np.ndarray | None  # float32 [n_queries, dims], L2-normalised; None: keyword
    floor: float  # the embedding model's similarity floor (`ranking.similarity_floor`)
    ranker: str  # dense | keyword | hybrid
    k: int
    # Per query, hybrid's keyword weight (`ranking.keyword_weight`): 0 makes that
    # query's hybrid ranking exactly dense.
    keyword_weights: tuple[float, ...] = ()

    def weight(self, qi: int) -> float:
        return self.keyword_weights[qi] if self.keyword_weights else KEYWORD_WEIGHT

    def keywords(self, qi: int) -> bool:
        """Whether query qi's keyword scores count (so are worth computing)."""
        return self.ranker == "keyword" or (self.ranker == "hybrid" and self.weight(qi) > 0)


@dataclass(frozen=True)
class Files:
    """Which of a store's files a search may return: `allowed` (indexed, and passing
    the filters); `excluded` holds the store's other files."""

    allowed: set[str]
    excluded: set[str]


class StoreSearch(Protocol):
    def rank(self, s: Session, store_id: str, version: int, q: StoreQuery, files: Files) -> Ranked:
        """The store's k best chunks among those of `files.allowed`.

        `version` is the store's `index_version` read in the session `s`; each
        chunk's score is its best over the queries, then discounted by
        `spread_files`; only positive scores are returned.
        """
        ...

    def forget(self, store_id: str) -> None:
        """Drop what is held for a deleted store."""
        ...


class ExactSearch:
    """Every chunk of the store scored, from per-store indexes cached in RAM."""

    def __init__(self, dense: DenseIndex, keyword: KeywordIndex) -> None:
        self.dense = dense
        self.keyword = keyword

    def rank(self, s: Session, store_id: str, version: int, q: StoreQuery, files: Files) -> Ranked:
        m = self.dense.matrix(s, store_id, version)
        scores = self._score(s, store_id, version, m, q)
        if not files.allowed.issuperset(m.files):
            scores = np.where(m.mask(files.allowed), scores, 0.0)
        rows, ranked = spread_files(scores, m.file_codes, q.k)
        return [
            (float(score), int(m.chunk_ids[i]), m.files[m.file_codes[i]])
            for i, score in zip(rows, ranked, strict=True)
        ]

    def forget(self, store_id: str) -> None:
        self.dense.forget(store_id)
        self.keyword.forget(store_id)

    def _score(
        self, s: Session, store_id: str, version: int, m: StoreMatrix, q: StoreQuery
    ) -> np.ndarray:
        """Each chunk's best score over the queries, aligned with the matrix rows."""
        best = np.zeros(len(m.chunk_ids), dtype=np.float32)
        if len(m.chunk_ids) == 0:
            return best
        # Not loaded when no query's keywords count (dense, or every query in another
        # script than the store's): a large store's postings take seconds to build.
        any_keywords = any(q.keywords(qi) for qi in range(len(q.queries)))
        postings = self.keyword.postings(s, store_id, version) if any_keywords else None
        first_rows = m.first_rows if q.ranker != "keyword" else None
        for qi, query in enumerate(q.queries):
            keyword = np.zeros(len(m.chunk_ids), dtype=np.float32)
            if postings is not None and q.keywords(qi):
                rows, kw = postings.scores(query)
                # The postings were loaded by their own query: map their rows onto
                # the matrix's by chunk id (the same ids unless a write came between).
                ids = postings.chunk_ids[rows]
                pos = np.minimum(np.searchsorted(m.chunk_ids, ids), len(m.chunk_ids) - 1)
                ok = m.chunk_ids[pos] == ids
                keyword[pos[ok]] = kw[ok]
            if q.ranker == "keyword":
                scores = keyword
            else:
                assert q.vectors is not None and first_rows is not None
                dense = with_document(dense_scores(m.matrix @ q.vectors[qi], q.floor), first_rows)
                scores = (
                    dense if q.ranker == "dense" else hybrid_scores(dense, keyword, q.weight(qi))
                )
            np.maximum(best, scores, out=best)
        return best
