"""PostgreSQL's search path (pgvector HNSW + full-text search) against exact search.

Used by benchmarks/retrieval.py --backends postgres: a corpus is indexed through a `tunelab
serve` on PostgreSQL, then each question is ranked twice over the very same rows, in
this process, with the same query vector: by `PgSearch` (candidates from the HNSW
index and the GIN index, what a server on PostgreSQL runs) and by `ExactSearch` (every
chunk scored, what a server on SQLite runs). recall@10 = the share of the exact top
10 that the PostgreSQL path also returns; "vectors" is the bare nearest-neighbour
query (HNSW top 10 against an exact scan of the store). Latency is per store search,
one query at a time, from the database (exact: matrix and postings already cached in
RAM, as on a warm server).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sqlalchemy import text

from tunelab.db.base import Database
from tunelab.retrieval.backend import ExactSearch, Files, StoreQuery
from tunelab.retrieval.index import DenseIndex, KeywordIndex
from tunelab.retrieval.pgindex import hnsw_name
from tunelab.retrieval.pgsearch import PgSearch, _nearest_sql
from tunelab.retrieval.ranking import UNRELATED, similarity_floor
from tunelab.retrieval.tables import VectorStoreRow


def _p50_p95(samples: list[float]) -> str:
    return f"{np.percentile(samples, 50) * 1000:>6.1f}{np.percentile(samples, 95) * 1000:>7.1f}"


def compare(
    database_url: str, store_id: str, questions: list[str], model: Any, qprefix: str, pprefix: str
) -> None:
    db = Database(database_url)
    exact, pg = ExactSearch(DenseIndex(), KeywordIndex()), PgSearch()
    floor = similarity_floor(
        model.encode([qprefix + x for x in UNRELATED], normalize_embeddings=True),
        model.encode([pprefix + x for x in UNRELATED], normalize_embeddings=True),
    )
    vectors = model.encode([qprefix + q for q in questions], normalize_embeddings=True)
    with db() as s:
        version = s.get(VectorStoreRow, store_id).index_version
        files = {r[0] for r in s.execute(text(
            "SELECT DISTINCT file_id FROM vector_store_chunks WHERE vector_store_id = :s"
        ), {"s": store_id})}  # fmt: skip
        dims = vectors.shape[1]
        plan = " ".join(r[0] for r in s.execute(
            text("EXPLAIN " + str(_nearest_sql(dims, "").compile())),
            {"store": store_id, "q": str(vectors[0].tolist()), "k": 100},
        ))  # fmt: skip
    used = "HNSW index" if hnsw_name(dims) in plan else "no HNSW index (exact scan)"
    print(f"  PostgreSQL plan for the nearest chunks: {used}")
    every = Files(files, set())
    print(f"  {'HNSW vs exact':<14}{'recall@10':>10}{'pg p50':>8}{'p95':>7}"
          f"{'exact p50':>11}{'p95':>7}  ms")  # fmt: skip
    for ranker in ("dense", "hybrid", "keyword"):
        recalls, t_pg, t_exact = [], [], []
        for question, v in zip(questions, vectors, strict=True):
            q = StoreQuery([question], None if ranker == "keyword" else v[None, :],
                           floor, ranker, 10)  # fmt: skip
            with db() as s:
                exact.rank(s, store_id, version, q, every)  # warm: matrix, postings
                t = time.perf_counter()
                want = [c for _, c, _ in exact.rank(s, store_id, version, q, every)]
                t_exact.append(time.perf_counter() - t)
            with db() as s:
                t = time.perf_counter()
                have = [c for _, c, _ in pg.rank(s, store_id, version, q, every)]
                t_pg.append(time.perf_counter() - t)
            if want:
                recalls.append(len(set(want) & set(have)) / len(want))
        print(f"  {ranker:<14}{np.mean(recalls):>10.3f}  {_p50_p95(t_pg)}   "
              f"{_p50_p95(t_exact)}")  # fmt: skip
    # The bare vector query: HNSW's 10 nearest against an exact scan of the store.
    recalls = []
    with db() as s:
        s.execute(text("SELECT set_config('hnsw.ef_search', '100', true)"))
        for v in vectors:
            params = {"store": store_id, "q": v, "k": 10}
            hnsw = {r[0] for r in s.execute(_nearest_sql(dims, ""), params)}
            s.execute(text("SELECT set_config('enable_indexscan', 'off', true)"))
            scan = {r[0] for r in s.execute(_nearest_sql(dims, ""), params)}
            s.execute(text("SELECT set_config('enable_indexscan', 'on', true)"))
            recalls.append(len(hnsw & scan) / max(len(scan), 1))
    print(f"  {'vectors':<14}{np.mean(recalls):>10.3f}  (HNSW top 10 vs exact scan, ef_search 100)")
    db.dispose()
