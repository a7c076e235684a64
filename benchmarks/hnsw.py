"""PostgreSQL's search path (pgvector HNSW + full-text search) against exact search.

Each corpus of benchmarks/corpora.py is one store in a PostgreSQL database with
pgvector, and each reported question is ranked twice over the very same rows, with
the same query vector: by `PgSearch` (candidates from the HNSW and GIN indexes: what
a server on PostgreSQL runs) and by `ExactSearch` (every chunk scored: what a server
on SQLite runs). Per ranker:

    recall@10  the share of the exact top 10 that the PostgreSQL path also returns,
               with the plan PostgreSQL chooses (for a small store: an exact scan of
               the store's rows) and with the HNSW index forced (`FORCE_HNSW`)
    MRR        of the answer page, PostgreSQL path (HNSW forced) and exact (a
               question is a hit at rank r when the r-th result comes from its page)
    latency    p50 / p95 of one store search, one query at a time, from the database
               (exact: the store's matrix and postings already cached in RAM, as on a
               warm server)

and "vectors": the bare nearest-neighbour query (HNSW top 10 against an exact scan).

Standalone (in-process, fast): the stores are written directly, chunked exactly as
ingestion chunks (`ranking_dev.index`: tunelab's extract_text and chunk_text; the
chunk vectors cached under the cache directory), through the same `PgChunkIndex.add`
ingestion calls. A throwaway PostgreSQL cluster is started (tests/postgres.py;
pgvector from `make system-deps`).

    .venv/bin/python benchmarks/hnsw.py [--models all-minilm-l6-v2]
        [--corpora man-en,python-doc,man-zh] [--chunks 800/400]

`benchmarks/retrieval.py --backends postgres` runs `compare` on stores filled
through the API of a `tunelab serve` on PostgreSQL instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from sqlalchemy import text

from tunelab.db.base import Database
from tunelab.retrieval.backend import ExactSearch, Files, StoreQuery
from tunelab.retrieval.index import DenseIndex, KeywordIndex
from tunelab.retrieval.pgindex import PgChunkIndex, hnsw_name
from tunelab.retrieval.pgsearch import PgSearch, _nearest_sql
from tunelab.retrieval.ranking import UNRELATED, similarity_floor
from tunelab.retrieval.tables import ChunkRow, VectorStoreFileRow, VectorStoreRow
from tunelab.retrieval.terms import encode_terms

# Planner settings under which the nearest-chunks query can only use the HNSW index
# (for a store of a few thousand chunks the planner prefers an exact scan).
FORCE_HNSW = text(
    "SELECT set_config('enable_seqscan', 'off', true), "
    "set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)"
)


def _p50_p95(samples: list[float]) -> str:
    return f"{np.percentile(samples, 50) * 1000:>8.1f}{np.percentile(samples, 95) * 1000:>7.1f}"


def _mrr(ranked_files: list[list[str]], answers: list[str]) -> float:
    rr = [
        next((1 / (i + 1) for i, f in enumerate(files) if f == answer), 0.0)
        for files, answer in zip(ranked_files, answers, strict=True)
    ]
    return float(np.mean(rr))


def compare(  # type: ignore[no-untyped-def]
    database_url: str, store_id: str, questions: list[str], model, qprefix: str, pprefix: str,
    answers: list[str] | None = None, page_of: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """Print recall@10, MRR (when `answers` are given: the page of each question;
    `page_of` maps a file id to its page) and latency, HNSW path against exact."""
    db = Database(database_url)
    exact, pg = ExactSearch(DenseIndex(), KeywordIndex()), PgSearch()
    floor = similarity_floor(
        model.encode([qprefix + x for x in UNRELATED], normalize_embeddings=True),
        model.encode([pprefix + x for x in UNRELATED], normalize_embeddings=True),
    )
    vectors = model.encode([qprefix + q for q in questions], normalize_embeddings=True)
    dims = vectors.shape[1]
    with db() as s:
        version = s.execute(
            text("SELECT index_version FROM vector_stores WHERE id = :s"), {"s": store_id}
        ).scalar_one()
        files = {r[0] for r in s.execute(text(
            "SELECT DISTINCT file_id FROM vector_store_chunks WHERE vector_store_id = :s"
        ), {"s": store_id})}  # fmt: skip
        n_chunks = s.execute(text(
            "SELECT count(*) FROM vector_store_chunks WHERE vector_store_id = :s"
        ), {"s": store_id}).scalar_one()  # fmt: skip
        plans = []
        for force in (False, True):
            if force:
                s.execute(FORCE_HNSW)
            plan = " ".join(r[0] for r in s.execute(
                text("EXPLAIN " + str(_nearest_sql(dims, "").compile())),
                {"store": store_id, "q": str(vectors[0].tolist()), "k": 100},
            ))  # fmt: skip
            plans.append("HNSW" if hnsw_name(dims) in plan else "exact scan")
    print(f"  {n_chunks} chunks, {len(files)} files; nearest chunks by the planner's choice: "
          f"{plans[0]}, forced: {plans[1]}")  # fmt: skip
    every = Files(files, set())
    print(f"  {'':<8}{'recall@10':>10}{'forced':>8}{'MRR pg':>8}{'exact':>7}"
          f"{'pg p50':>8}{'p95':>7}{'forced':>8}{'p95':>7}{'exact':>8}{'p95':>7}  ms")  # fmt: skip
    for ranker in ("hybrid", "dense", "keyword"):
        recalls: dict[bool, list[float]] = {False: [], True: []}
        times: dict[str, list[float]] = {"pg": [], "forced": [], "exact": []}
        pages_pg, pages_exact = [], []
        for question, v in zip(questions, vectors, strict=True):
            q = StoreQuery([question], None if ranker == "keyword" else v[None, :],
                           floor, ranker, 10)  # fmt: skip
            with db() as s:
                exact.rank(s, store_id, version, q, every)  # warm: matrix, postings
                t = time.perf_counter()
                want = exact.rank(s, store_id, version, q, every)
                times["exact"].append(time.perf_counter() - t)
            for force in (False, True):
                with db() as s:
                    if force:
                        s.execute(FORCE_HNSW)
                    t = time.perf_counter()
                    have = pg.rank(s, store_id, version, q, every)
                    times["forced" if force else "pg"].append(time.perf_counter() - t)
                if want:
                    found = {c for _, c, _ in want} & {c for _, c, _ in have}
                    recalls[force].append(len(found) / len(want))
            pages = page_of or {}
            pages_exact.append([pages.get(f, f) for _, _, f in want])
            pages_pg.append([pages.get(f, f) for _, _, f in have])
        mrr = (
            f"{_mrr(pages_pg, answers):>8.2f}{_mrr(pages_exact, answers):>7.2f}"
            if answers
            else f"{'':>15}"
        )
        print(f"  {ranker:<8}{np.mean(recalls[False]):>10.3f}{np.mean(recalls[True]):>8.3f}"
              f"{mrr}{_p50_p95(times['pg'])}{_p50_p95(times['forced'])}"
              f"{_p50_p95(times['exact'])}", flush=True)  # fmt: skip
    recalls = []
    with db() as s:
        s.execute(text("SELECT set_config('hnsw.ef_search', '100', true)"))
        for v in vectors:
            params = {"store": store_id, "q": v, "k": 10}
            near = {r[0] for r in s.execute(_nearest_sql(dims, ""), params)}
            s.execute(text("SELECT set_config('enable_indexscan', 'off', true)"))
            scan = {r[0] for r in s.execute(_nearest_sql(dims, ""), params)}
            s.execute(text("SELECT set_config('enable_indexscan', 'on', true)"))
            recalls.append(len(near & scan) / max(len(scan), 1))
    print(f"  {'vectors':<10}{np.mean(recalls):>10.3f}  (HNSW top 10 vs exact scan, ef_search 100)")
    db.dispose()


def write_store(db: Database, store_id: str, ix: Any, model_id: str) -> None:
    """One store holding `ix`'s chunks (`ranking_dev.Indexed`), indexed as ingestion
    indexes them; each page is a file named by the page."""
    index = PgChunkIndex()
    with db.begin() as s:
        s.add(VectorStoreRow(id=store_id, project="bench", embedding_model=model_id,
                             index_version=1, created_at=0, last_active_at=0))  # fmt: skip
        for name in ix.names:
            s.add(VectorStoreFileRow(vector_store_id=store_id, file_id=name, project="bench",
                                     filename=name, status="completed", max_chunk_tokens=0,
                                     chunk_overlap_tokens=0, created_at=0))  # fmt: skip
    position: dict[int, int] = {}
    for start in range(0, len(ix.texts), 500):
        rows = []
        for n in range(start, min(start + 500, len(ix.texts))):
            page = int(ix.pages[n])
            position[page] = position.get(page, -1) + 1
            t = ix.texts[n]
            rows.append(ChunkRow(
                vector_store_id=store_id, file_id=ix.names[page], position=position[page],
                text=t, start_char=0, end_char=len(t), n_tokens=0,
                embedding=ix.matrix[n].astype(np.float32).tobytes(),
                keyword_terms=encode_terms(t),
            ))  # fmt: skip
        with db.begin() as s:
            s.add_all(rows)
            s.flush()
            index.add(s, rows)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("ANALYZE"))


def main() -> None:
    import ranking_dev
    from corpora import build

    from tests import postgres
    from tests.support import scratch_database
    from tunelab.db.base import migrate

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="all-minilm-l6-v2")
    ap.add_argument("--corpora", default="man-en,python-doc,man-zh")
    ap.add_argument("--chunks", default="800/400", help="default: auto, clamped to the model")
    args = ap.parse_args()
    corpora, _ = build(ranking_dev.CACHE)
    size, overlap = (int(x) for x in args.chunks.split("/"))
    with postgres.cluster() as server:
        for model_id in args.models.split(","):
            model, qprefix, pprefix = ranking_dev.load_model(model_id)
            url = scratch_database(server, f"hnsw_{model_id}")
            migrate(url)
            db = Database(url)
            for corpus in [c for c in corpora if c.name in args.corpora.split(",")]:
                print(f"\n{model_id} / {corpus.name} ({args.chunks}) on PostgreSQL + pgvector")
                ix = ranking_dev.index(corpus, model_id, model, pprefix, size, overlap)
                store_id = f"vs_{corpus.name}"
                t = time.perf_counter()
                write_store(db, store_id, ix, model_id)
                print(f"  written and indexed in {time.perf_counter() - t:.0f} s")
                qs = corpus.questions()
                compare(url, store_id, [q.question for q in qs], model, qprefix, pprefix,
                        [q.page for q in qs])  # fmt: skip
            db.dispose()


if __name__ == "__main__":
    main()
