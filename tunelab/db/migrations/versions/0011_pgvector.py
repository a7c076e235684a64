"""Vector stores on PostgreSQL search in the database: pgvector HNSW and full-text search.

On PostgreSQL, `vector_store_chunk_index` holds one row per chunk next to
`vector_store_chunks` (deleted with it): the chunk's vector as a pgvector `vector`,
searched through an HNSW index (inner product: the vectors are L2-normalised, so it
is the cosine), and its keyword terms (the same words the BM25 of the embedded path
counts: jieba-segmented Chinese, Latin words) as a `tsvector` built from the
pre-segmented lexemes, searched through a GIN index. An HNSW index covers vectors of
one length, so each length gets a partial index on `dims`; this revision creates the
one for 384 (the bundled embedding models), the search backend adds others when a
store with another length is first written. Chunks written before this revision are
indexed when the server starts (`tunelab.retrieval.pgindex.catch_up`).

SQLite keeps its exact in-RAM search: this revision does nothing there.

Revision ID: 0011_pgvector
Revises: 0010_jobs_objective
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_pgvector"
down_revision = "0010_jobs_objective"
branch_labels = None
depends_on = None

# Spelled out here, not imported: a migration must keep meaning what it meant when
# it was written, whatever the live code later says.
TABLE = """
CREATE TABLE vector_store_chunk_index (
    chunk_id integer PRIMARY KEY REFERENCES vector_store_chunks (id) ON DELETE CASCADE,
    vector_store_id varchar(64) NOT NULL,
    file_id varchar(64) NOT NULL,
    position integer NOT NULL,
    dims integer NOT NULL,
    embedding vector NOT NULL,
    keywords tsvector NOT NULL,
    n_terms integer NOT NULL
)
"""
INDEXES = [
    "CREATE INDEX ix_vector_store_chunk_index_store_file "
    "ON vector_store_chunk_index (vector_store_id, file_id, position)",
    "CREATE INDEX ix_vector_store_chunk_index_keywords "
    "ON vector_store_chunk_index USING gin (keywords)",
    "CREATE INDEX ix_vector_store_chunk_index_hnsw_384 ON vector_store_chunk_index "
    "USING hnsw ((embedding::vector(384)) vector_ip_ops) WHERE dims = 384",
]

MISSING = (
    "This PostgreSQL server lacks the pgvector extension, which tunelab's vector stores "
    "need on PostgreSQL. Install it on the database server (Debian: "
    "scripts/install-pgvector.sh, run by `make system-deps`; elsewhere the "
    "postgresql-NN-pgvector package or https://github.com/pgvector/pgvector), then "
    "start tunelab again."
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    installed = bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    ).scalar()
    if not installed:
        available = bind.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        ).scalar()
        if not available:
            raise RuntimeError(MISSING)
        # pgvector is not a trusted extension: this needs a superuser (or an
        # administrator who ran it once beforehand, after which this is skipped).
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(TABLE)
    for ddl in INDEXES:
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Drops its indexes with it (also any added at run time for other vector lengths);
    # the extension stays, other databases' objects may use it.
    op.execute("DROP TABLE IF EXISTS vector_store_chunk_index")
