"""Vector stores on PostgreSQL with pgvector: the API tests again, and HNSW vs exact.

The first tests are tests/test_vector_stores_api.py's own (imported, so they run
here against this module's server): stores, English and Chinese files, each ranker,
filters, deletion, through the openai SDK on a real PostgreSQL whose search is
pgvector's HNSW index and full-text search. The last ones rank a synthetic store of a
few thousand chunks with both backends over the same rows: recall@10 of the HNSW
path against exact search, and keyword ranking identical to the SQLite path's BM25.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from tests import test_vector_stores_api as api
from tests.support import run_server, scratch_database
from tunelab.db.base import Database, migrate
from tunelab.retrieval.backend import ExactSearch, Files, StoreQuery
from tunelab.retrieval.index import DenseIndex, KeywordIndex
from tunelab.retrieval.pgindex import PgChunkIndex, hnsw_name
from tunelab.retrieval.pgsearch import PgSearch, _nearest_sql
from tunelab.retrieval.tables import ChunkRow, VectorStoreFileRow, VectorStoreRow
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel

KEYS = api.KEYS
client = api.client


@pytest.fixture(scope="module")
def manual_store(client: Any) -> tuple[str, str, str]:
    """The API module's manual store, Markdown only (its PDF copy tests extraction,
    not the search backend, and would double the ingestion time)."""
    vs = client.vector_stores.create(name="manual", metadata={"team": "support"})
    md = client.vector_stores.files.upload_and_poll(
        vector_store_id=vs.id, file=("manual.md", api.MANUAL.encode())
    )
    assert md.status == "completed", md.last_error
    return vs.id, md.id, md.id


# In this order: the last one deletes the manual store.
test_rankers_and_score_threshold = api.test_rankers_and_score_threshold
test_attribute_filters_and_updates = api.test_attribute_filters_and_updates
test_chinese_document_utf8_and_gbk = api.test_chinese_document_utf8_and_gbk
test_deleting_a_file_removes_its_chunks_from_search = (
    api.test_deleting_a_file_removes_its_chunks_from_search
)


@pytest.fixture(scope="module")
def pg_url(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return scratch_database(postgres_url, f"pgvec_{tmp_path_factory.mktemp('db').name}")


@pytest.fixture(scope="module")
def server(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[tuple[str, Settings]]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("vs") / "data",
        cache_dir=model_cache,
        api_keys=KEYS,
        database_url=pg_url,
    )
    with run_server(settings) as url:
        yield url, settings


def test_chunks_are_indexed_in_postgres(manual_store: Any, pg_url: str) -> None:
    """The store's chunks have their vectors and keywords in the database."""
    vs_id = manual_store[0]
    db = Database(pg_url)
    with db.engine.connect() as c:
        n_chunks, n_indexed, n_vectors = c.execute(
            text(
                "SELECT count(*), count(i.chunk_id), count(i.embedding) FROM vector_store_chunks "
                "c LEFT JOIN vector_store_chunk_index i ON i.chunk_id = c.id "
                "WHERE c.vector_store_id = :s"
            ),
            {"s": vs_id},
        ).one()
        hits = c.execute(
            text(
                "SELECT count(*) FROM vector_store_chunk_index WHERE vector_store_id = :s "
                "AND keywords @@ 'descaling'::tsquery"
            ),
            {"s": vs_id},
        ).scalar()
    db.dispose()
    assert n_chunks > 0 and n_indexed == n_vectors == n_chunks
    assert hits and hits > 0


# ------------------------------------------------------------ HNSW against exact

DIMS = 48  # not 384: the index for this length is made on first write (`ensure_hnsw`)
N_FILES, PER_FILE = 200, 10
WORDS = [f"w{i}" for i in range(400)] + ["文件", "系统", "数据", "检索", "向量"]


def _synthetic_store(db: Database, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A store of N_FILES x PER_FILE chunks: clustered unit vectors (files near topics,
    chunks near their file), texts of random words incl. Chinese. Returns the topics."""
    topics = rng.standard_normal((40, DIMS)).astype(np.float32)
    store_id = f"vs_synthetic_{rng.integers(1 << 30)}"
    index = PgChunkIndex()
    with db.begin() as s:
        s.add(
            VectorStoreRow(
                id=store_id, project="p", embedding_model="m", index_version=1,
                created_at=0, last_active_at=0,
            )
        )  # fmt: skip
        rows: list[Any] = []
        for f in range(N_FILES):
            s.add(
                VectorStoreFileRow(
                    vector_store_id=store_id, file_id=f"file-{f}", project="p",
                    filename=f"{f}.txt", status="completed", max_chunk_tokens=800,
                    chunk_overlap_tokens=400, created_at=0,
                )
            )  # fmt: skip
            centre = topics[rng.integers(len(topics))] + 0.6 * rng.standard_normal(DIMS)
            for p in range(PER_FILE):
                v = (centre + 0.5 * rng.standard_normal(DIMS)).astype(np.float32)
                v /= np.linalg.norm(v)
                words = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 60))))
                rows.append(
                    ChunkRow(
                        vector_store_id=store_id, file_id=f"file-{f}", position=p, text=words,
                        start_char=0, end_char=len(words), n_tokens=1, embedding=v.tobytes(),
                    )
                )  # fmt: skip
        s.add_all(rows)
        s.flush()
        index.add(s, rows)
    return store_id, topics


@pytest.fixture(scope="module")
def synthetic(pg_url: str) -> Iterator[tuple[Database, str, np.ndarray]]:
    migrate(pg_url)
    db = Database(pg_url)
    store_id, topics = _synthetic_store(db, np.random.default_rng(7))
    with db.begin() as s:
        s.execute(text("ANALYZE vector_store_chunk_index"))
    yield db, store_id, topics
    db.dispose()


def _rank(db: Database, backend: Any, store_id: str, q: StoreQuery, files: Files) -> list[int]:
    with db() as s:
        return [cid for _, cid, _ in backend.rank(s, store_id, 1, q, files)]


def test_hnsw_index_is_used_and_recall_at_10_matches_exact(synthetic: Any) -> None:
    db, store_id, topics = synthetic
    rng = np.random.default_rng(1)
    every = Files({f"file-{f}" for f in range(N_FILES)}, set())
    exact, hnsw = ExactSearch(DenseIndex(), KeywordIndex()), PgSearch()
    with db() as s:  # the planner takes the HNSW index for the nearest-chunks query
        plan = s.execute(
            text("EXPLAIN " + str(_nearest_sql(DIMS, "").compile())),
            {"store": store_id, "q": str(topics[0].tolist()), "k": 100},
        ).all()
    assert hnsw_name(DIMS) in " ".join(r[0] for r in plan), plan
    # Files filtered out (attributes, or not yet indexed): pgvector's iterative index
    # scan must still find 10 of the others.
    odd = {f"file-{f}" for f in range(1, N_FILES, 2)}
    filtered = Files(every.allowed - odd, odd)
    recalls: dict[str, list[float]] = {"dense": [], "hybrid": [], "filtered": []}
    for i in range(30):
        v = topics[i % len(topics)] + 0.8 * rng.standard_normal(DIMS)
        v = (v / np.linalg.norm(v)).astype(np.float32)[None, :]
        query = " ".join(rng.choice(WORDS, size=3))
        for ranker, got in recalls.items():
            files = filtered if ranker == "filtered" else every
            q = StoreQuery([query], v, 0.0, "dense" if ranker == "filtered" else ranker, 10)
            want = _rank(db, exact, store_id, q, files)
            have = _rank(db, hnsw, store_id, q, files)
            assert len(want) == 10
            got.append(len(set(want) & set(have)) / len(want))
        # A query in another script than the store's (keyword weight 0, `Searcher`):
        # hybrid ranks exactly as dense on both paths.
        dense, gated = (StoreQuery([query], v, 0.0, r, 10, (0.0,)) for r in ("dense", "hybrid"))
        for backend in (exact, hnsw):
            assert _rank(db, backend, store_id, gated, every) == _rank(
                db, backend, store_id, dense, every
            )
    assert min(np.mean(v) for v in recalls.values()) >= 0.98, recalls


def test_keyword_ranking_and_filters_match_the_exact_path(synthetic: Any) -> None:
    db, store_id, _ = synthetic
    exact, pg = ExactSearch(DenseIndex(), KeywordIndex()), PgSearch()
    half = {f"file-{f}" for f in range(0, N_FILES, 2)}
    others = {f"file-{f}" for f in range(1, N_FILES, 2)}
    for query in ["w3 w17 w250", "数据检索系统", "w42 向量 w7 w7", "nothing-matches-this"]:
        for files in (Files(half | others, set()), Files(half, others)):
            q = StoreQuery([query], None, 0.0, "keyword", 10)
            with db() as s:
                want = exact.rank(s, store_id, 1, q, files)
                have = pg.rank(s, store_id, 1, q, files)
            assert [c for _, c, _ in have] == [c for _, c, _ in want], query
            assert np.allclose([x for x, _, _ in have], [x for x, _, _ in want], atol=1e-6)
            assert {f for _, _, f in have} <= files.allowed


def test_chunks_written_before_the_index_are_indexed_at_startup(synthetic: Any) -> None:
    """What `Retrieval.start` runs: chunks without an index row (a store from before
    migration 0011) get one, in batches, once."""
    db, store_id, _ = synthetic
    count = text(
        f"SELECT count(*) FROM vector_store_chunk_index WHERE vector_store_id = '{store_id}'"
    )
    with db.begin() as s:
        s.execute(
            text(
                "DELETE FROM vector_store_chunk_index WHERE chunk_id IN (SELECT chunk_id FROM "
                "vector_store_chunk_index WHERE vector_store_id = :s ORDER BY chunk_id LIMIT 300)"
            ),
            {"s": store_id},
        )
        assert s.execute(count).scalar() == N_FILES * PER_FILE - 300
    assert PgChunkIndex().catch_up(db, batch=128) == 300
    assert PgChunkIndex().catch_up(db) == 0
    with db() as s:
        assert s.execute(count).scalar() == N_FILES * PER_FILE


# A second server (replica) on the same database finds the store, then deletes it.
test_index_survives_a_restart_and_store_delete = api.test_index_survives_a_restart_and_store_delete
