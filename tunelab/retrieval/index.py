"""The two indexes behind search, dense vectors and BM25 keywords, both exact and in RAM.

Dense: each store's chunk vectors (float32, L2-normalised, stored as blobs in
`vector_store_chunks`) are stacked into one matrix cached in RAM and searched exactly
(one matrix-vector product). Exact search over a few hundred thousand 384-d vectors
is a few milliseconds, close to the memory-bandwidth limit, and never misses;
`benchmarks/retrieval.py` measures it next to FAISS IndexFlatIP.

Keywords: Okapi BM25 (k1=1.2, b=0.75, Lucene's idf) over the chunks' keyword terms
(`terms.py`: English words less stop words, jieba-segmented Chinese), with the statistics
(document frequencies, average length) of the store alone, so one project's
documents never change another's ranking. Each store's postings are one sorted
array of term hashes with the chunk row and count of each occurrence, loaded from
`vector_store_chunks.keyword_terms` in one query.

Both caches are keyed by the store's `index_version`, which every write bumps in the
same transaction as the chunks, so several server processes sharing a database never
search a stale index, and a restart rebuilds from the rows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from sqlalchemy import ColumnElement, case, select
from sqlalchemy.orm import Session

from tunelab.retrieval.tables import ChunkRow, VectorStoreFileRow
from tunelab.retrieval.terms import TERM_DTYPE, decode_terms, encode_terms, query_terms

BM25_K1 = 1.2
BM25_B = 0.75


def indexed(store_id: str) -> list[ColumnElement[bool]]:
    """The chunks a store's indexes hold: those of its completed files. A long file's
    chunks are written while it is still being ingested (ingestion.py); they must not
    count in BM25's statistics before it completes, nor after a kill left them."""
    completed = select(VectorStoreFileRow.file_id).where(
        VectorStoreFileRow.vector_store_id == store_id,
        VectorStoreFileRow.status == "completed",
    )
    return [ChunkRow.vector_store_id == store_id, ChunkRow.file_id.in_(completed)]


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
        for cid, p in zip(ids, pos, strict=True):
            found = p < len(self.chunk_ids) and self.chunk_ids[p] == cid
            out.append(self.files[self.file_codes[p]] if found else None)
        return out

    @cached_property
    def first_rows(self) -> np.ndarray:
        """For each row, the row of its file's first chunk (ids ascend with position)."""
        codes, first = np.unique(self.file_codes, return_index=True)
        lookup = np.zeros(len(self.files), dtype=np.int64)
        lookup[codes] = first
        rows: np.ndarray = lookup[self.file_codes]
        return rows

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
            .where(*indexed(store_id))
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


@dataclass(frozen=True)
class StorePostings:
    """One store's BM25 postings: for each (term, chunk) pair, sorted by term."""

    version: int
    chunk_ids: np.ndarray  # int64, ascending: the store's chunks
    lengths: np.ndarray  # float32 [n_chunks]: terms per chunk
    terms: np.ndarray  # uint32 [n_pairs], sorted
    rows: np.ndarray  # int32 [n_pairs]: index into chunk_ids
    tfs: np.ndarray  # float32 [n_pairs]

    @classmethod
    def build(
        cls, version: int, chunk_ids: np.ndarray, per_chunk: list[np.ndarray]
    ) -> StorePostings:
        counts = np.fromiter((len(a) for a in per_chunk), dtype=np.int64, count=len(per_chunk))
        pairs = np.concatenate(per_chunk) if per_chunk else np.zeros(0, dtype=TERM_DTYPE)
        rows = np.repeat(np.arange(len(per_chunk), dtype=np.int32), counts)
        tf = pairs["tf"].astype(np.float32)
        lengths = np.bincount(rows, weights=tf, minlength=len(per_chunk)).astype(np.float32)
        order = np.argsort(pairs["term"], kind="stable")
        return cls(version, chunk_ids, lengths, pairs["term"][order], rows[order], tf[order])

    @classmethod
    def of_terms(
        cls, chunk_ids: np.ndarray, lengths: np.ndarray, blobs: list[bytes], hashes: list[int]
    ) -> StorePostings:
        """The postings of only the terms `hashes`, over chunks given by their stored
        (term, count) blobs and their lengths in terms: all that scoring a query made of
        those terms reads, built in a few vectorised steps."""
        pairs = np.frombuffer(b"".join(blobs), dtype=TERM_DTYPE)
        counts = np.fromiter((len(b) // TERM_DTYPE.itemsize for b in blobs), np.int64, len(blobs))
        rows = np.repeat(np.arange(len(blobs), dtype=np.int32), counts)
        keep = np.isin(pairs["term"], np.asarray(hashes, dtype=np.uint32))
        terms, rows, tf = pairs["term"][keep], rows[keep], pairs["tf"][keep].astype(np.float32)
        order = np.argsort(terms, kind="stable")
        return cls(0, chunk_ids, lengths.astype(np.float32), terms[order], rows[order], tf[order])

    def scores(
        self, query: str, store: tuple[int, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, score) of the chunks that contain a query term; score in [0, 1].

        The score is BM25 divided by the BM25 of an average-length chunk holding each
        query term once, capped at 1: roughly the share of the query's (idf-weighted)
        words that the chunk contains. A query term absent from the store still counts
        in the divisor, so a chunk that shares one common word with a long question
        scores low however the store is made up.

        `store`: (chunks, average length) of the whole store when these postings
        hold only some of its chunks, all those that contain a query term (so the
        document frequencies are still the store's): how PostgreSQL ranks.
        """
        hashes = query_terms(query)
        if not hashes or len(self.chunk_ids) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        n, avgdl = store if store is not None else (len(self.chunk_ids), self.lengths.mean())
        avgdl = float(avgdl) or 1.0
        norm = BM25_K1 * (1 - BM25_B + BM25_B * self.lengths / avgdl)
        total = np.zeros(len(self.chunk_ids), dtype=np.float32)
        full = 0.0
        for h in hashes:
            lo, hi = np.searchsorted(self.terms, [h, h + 1])
            df = int(hi - lo)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            full += idf
            if df:
                rows, tf = self.rows[lo:hi], self.tfs[lo:hi]
                total[rows] += idf * tf * (BM25_K1 + 1) / (tf + norm[rows])
        hit = np.flatnonzero(total)
        return hit, np.minimum(total[hit] / full, 1.0)


class KeywordIndex:
    """Per-store BM25 postings cached in RAM, rebuilt when the store's version moves.

    The terms of a chunk are computed once, at ingestion (`terms.encode_terms`), and
    stored on its row; rows from before they were stored are tokenised when loaded.
    """

    def __init__(self) -> None:
        self._cache: dict[str, StorePostings] = {}
        self._lock = threading.Lock()

    def postings(self, s: Session, store_id: str, version: int) -> StorePostings:
        cached = self._cache.get(store_id)
        if cached is not None and cached.version == version:
            return cached
        rows = s.execute(
            select(
                ChunkRow.id,
                ChunkRow.keyword_terms,
                case((ChunkRow.keyword_terms.is_(None), ChunkRow.text), else_=None),
            )
            .where(*indexed(store_id))
            .order_by(ChunkRow.id)
        ).all()
        per_chunk = [decode_terms(t if t is not None else encode_terms(x)) for _, t, x in rows]
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        loaded = StorePostings.build(version, ids, per_chunk)
        with self._lock:
            self._cache[store_id] = loaded
        return loaded

    def forget(self, store_id: str) -> None:
        with self._lock:
            self._cache.pop(store_id, None)
