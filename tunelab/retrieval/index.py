"""The two indexes behind search: dense vectors and keywords, and their fusion.

Dense: each store's chunk vectors (float32, L2-normalised, stored as blobs in
`vector_store_chunks`) are stacked into one matrix cached in RAM and searched exactly
(one matrix-vector product, then argpartition). Exact search over a few hundred
thousand 384-d vectors is a few milliseconds, close to the memory-bandwidth limit, and
never misses; `benchmarks/retrieval.py` measures it next to FAISS IndexFlatIP. The
cache is keyed by the store's `index_version`, which every write bumps, so several
server processes sharing a database never search a stale matrix.

Keywords: SQLite FTS5 with the `trigram` tokenizer, which indexes every 3-character
substring and so works for Chinese (no word segmentation needed) as well as for
English. Queries are split into words (English) and character runs (CJK, cut into
trigrams), OR-ed and ranked by bm25; for CJK queries the matches are reranked by how
many of the query's character bigrams they contain (most Chinese words are two
characters, below what a trigram index can match on its own). A query with no term of 3+ characters (e.g. the
2-character Chinese word "电池") falls back to a LIKE scan of the store's chunks.
When the database is SQLite the FTS table lives in it and is written in the same
transaction as the chunks; on PostgreSQL it is a separate SQLite file under
`vectors_dir` (written right after the chunk rows commit).

Fusion: reciprocal rank fusion (k=60) of the ranked lists, normalised so that a chunk
ranked first in every non-empty list scores 1.0.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from tunelab.retrieval.tables import ChunkRow

FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS vector_store_chunks_fts USING fts5("
    "text, vector_store_id UNINDEXED, tokenize='trigram')"
)
RRF_K = 60

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TERMS = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")
# Trigram matching is substring matching, so very common words would match almost
# every chunk ("the" is inside "there", "other", ...): they carry no signal.
_STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "but",
        "not",
        "you",
        "your",
        "yours",
        "with",
        "this",
        "that",
        "these",
        "those",
        "from",
        "have",
        "has",
        "had",
        "was",
        "were",
        "will",
        "would",
        "can",
        "could",
        "should",
        "does",
        "did",
        "how",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "into",
        "about",
        "there",
        "their",
        "them",
        "they",
        "its",
        "any",
        "all",
        "our",
        "out",
        "may",
        "might",
        "must",
        "shall",
        "than",
        "then",
        "too",
        "very",
        "just",
        "also",
        "get",
        "got",
        "use",
        "used",
        "using",
        "some",
        "such",
        "only",
        "own",
        "same",
        "each",
        "both",
    ]
)


# ---------------------------------------------------------------- dense


@dataclass(frozen=True)
class StoreMatrix:
    """One store's chunk vectors, rows ordered by chunk id."""

    version: int
    chunk_ids: np.ndarray  # int64, ascending
    file_codes: np.ndarray  # int32 index into `files`
    files: list[str]
    matrix: np.ndarray  # float32 [n, dim]

    def file_of(self, chunk_ids: Iterable[int]) -> list[str | None]:
        ids = np.fromiter(chunk_ids, dtype=np.int64)
        pos = np.searchsorted(self.chunk_ids, ids)
        out: list[str | None] = []
        for cid, p in zip(ids, pos):
            found = p < len(self.chunk_ids) and self.chunk_ids[p] == cid
            out.append(self.files[self.file_codes[p]] if found else None)
        return out

    def mask(self, allowed_files: set[str]) -> np.ndarray:
        ok = np.array([f in allowed_files for f in self.files], dtype=bool)
        return ok[self.file_codes] if len(self.file_codes) else np.zeros(0, dtype=bool)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return idx[np.argsort(-scores[idx], kind="stable")]


class DenseIndex:
    """Per-store matrices cached in RAM, reloaded when the store's version moves."""

    def __init__(self) -> None:
        self._cache: dict[str, StoreMatrix] = {}
        self._lock = threading.Lock()

    def matrix(self, s: Session, store_id: str, version: int) -> StoreMatrix:
        cached = self._cache.get(store_id)
        if cached is not None and cached.version == version:
            return cached
        rows = s.execute(
            select(ChunkRow.id, ChunkRow.file_id, ChunkRow.embedding)
            .where(ChunkRow.vector_store_id == store_id)
            .order_by(ChunkRow.id)
        ).all()
        files: dict[str, int] = {}
        codes = np.fromiter((files.setdefault(r[1], len(files)) for r in rows), dtype=np.int32)
        if rows:
            dim = len(rows[0][2]) // 4
            matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
            matrix = matrix.reshape(len(rows), dim)
        else:
            matrix = np.zeros((0, 0), dtype=np.float32)
        loaded = StoreMatrix(
            version=version,
            chunk_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            file_codes=codes,
            files=list(files),
            matrix=matrix,
        )
        with self._lock:
            self._cache[store_id] = loaded
        return loaded

    def forget(self, store_id: str) -> None:
        with self._lock:
            self._cache.pop(store_id, None)

    @staticmethod
    def search(
        m: StoreMatrix, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the k nearest chunks to one normalised query vector."""
        if len(m.chunk_ids) == 0:
            return []
        scores = m.matrix @ query
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
            k = min(k, int(allowed.sum()))
        idx = top_k(scores, k)
        return [(int(m.chunk_ids[i]), float(scores[i])) for i in idx]


# ---------------------------------------------------------------- keywords


def keyword_terms(query: str) -> tuple[list[str], list[str]]:
    """(terms FTS5 trigram can match, terms too short for it) of a query."""
    long_terms: list[str] = []
    short_terms: list[str] = []
    for run in _TERMS.findall(query.lower()):
        if _IS_CJK.match(run):
            if len(run) < 3:
                short_terms.append(run)
            else:
                long_terms.extend(run[i : i + 3] for i in range(len(run) - 2))
        elif len(run) >= 3 and run not in _STOPWORDS:
            long_terms.append(run)
        elif len(run) == 2 and run.isdigit():
            short_terms.append(run)
    return list(dict.fromkeys(long_terms)), list(dict.fromkeys(short_terms))


def cjk_bigrams(query: str) -> list[str]:
    runs = [r for r in _TERMS.findall(query) if _IS_CJK.match(r)]
    return list(dict.fromkeys(r[i : i + 2] for r in runs for i in range(len(r) - 1)))


class KeywordIndex:
    """FTS5 trigram index of chunk texts; `separate_file` is used when the DB is not SQLite."""

    def __init__(self, separate_file: Path | None = None) -> None:
        self._engine = None
        if separate_file is not None:
            separate_file.parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(
                f"sqlite:///{separate_file}", connect_args={"check_same_thread": False}
            )
            with self._engine.begin() as c:
                c.exec_driver_sql(FTS_DDL)

    def _run(self, s: Session, sql: str, params: Any = None) -> list[Any]:
        if self._engine is None:
            result = s.execute(text(sql), params or {})
            return list(result) if result.returns_rows else []
        with self._engine.begin() as c:
            result = c.execute(text(sql), params or {})
            return list(result) if result.returns_rows else []

    def add(self, s: Session, store_id: str, chunks: list[tuple[int, str]]) -> None:
        if chunks:
            self._run(
                s,
                "INSERT INTO vector_store_chunks_fts(rowid, text, vector_store_id) "
                "VALUES (:id, :text, :vs)",
                [{"id": cid, "text": t, "vs": store_id} for cid, t in chunks],
            )

    def remove(self, s: Session, chunk_ids: list[int]) -> None:
        for start in range(0, len(chunk_ids), 500):
            part = chunk_ids[start : start + 500]
            marks = ",".join(str(int(c)) for c in part)
            self._run(s, f"DELETE FROM vector_store_chunks_fts WHERE rowid IN ({marks})")

    def search(self, s: Session, store_id: str, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, score in [0, 1)) of the best keyword matches, best first."""
        long_terms, short_terms = keyword_terms(query)
        if long_terms:
            match = " OR ".join('"' + t.replace('"', '""') + '"' for t in long_terms)
            rows = self._run(
                s,
                "SELECT rowid, bm25(vector_store_chunks_fts), text FROM vector_store_chunks_fts "
                "WHERE vector_store_chunks_fts MATCH :q AND vector_store_id = :vs "
                "ORDER BY bm25(vector_store_chunks_fts) LIMIT :k",
                {"q": match, "vs": store_id, "k": k},
            )
            # bm25() is negative, more negative is better; squash into [0, 1).
            scored = [(int(r[0]), -r[1] / (1.0 - r[1]), r[2]) for r in rows]
            bigrams = cjk_bigrams(query)
            if not bigrams:
                return [(cid, sc) for cid, sc, _ in scored]
            # Chinese words are mostly two characters, which trigrams cannot see:
            # rerank the matches by how many of the query's bigrams each contains.
            reranked = [
                (cid, 0.5 * sc + 0.5 * sum(b in t for b in bigrams) / len(bigrams))
                for cid, sc, t in scored
            ]
            return sorted(reranked, key=lambda x: (-x[1], x[0]))
        if not short_terms:
            return []
        hits: dict[int, int] = defaultdict(int)
        for term in short_terms:
            escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            for (cid,) in self._run(
                s,
                "SELECT rowid FROM vector_store_chunks_fts WHERE vector_store_id = :vs "
                "AND text LIKE :p ESCAPE '\\'",
                {"vs": store_id, "p": f"%{escaped}%"},
            ):
                hits[int(cid)] += 1
        ranked = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [(cid, n / (len(short_terms) + 1)) for cid, n in ranked]


# ---------------------------------------------------------------- fusion


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked id lists; scores are in [0, 1], 1 = first in every non-empty list."""
    lists = [r for r in rankings if r]
    if not lists:
        return []
    scores: dict[int, float] = defaultdict(float)
    for ranking in lists:
        for rank, cid in enumerate(ranking):
            scores[cid] += 1.0 / (k + rank + 1)
    best = len(lists) / (k + 1)
    return sorted(((cid, s / best) for cid, s in scores.items()), key=lambda x: (-x[1], x[0]))
