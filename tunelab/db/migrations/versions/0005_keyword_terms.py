"""Keyword terms on each chunk for the BM25 keyword index; the FTS5 trigram table goes.

`vector_store_chunks.keyword_terms` holds each chunk's (term hash, count) pairs
(see tunelab.retrieval.terms), from which each store's BM25 index is built in RAM,
on SQLite and PostgreSQL alike. Rows written before this revision keep NULL and are
tokenised from their text when their store is loaded. The FTS5 table of 0003 is
dropped (on PostgreSQL it was a side file, `vectors/keywords.sqlite`, which is no
longer read). Downgrading recreates and refills the FTS5 table from the chunk texts.

Revision ID: 0005_keyword_terms
Revises: 0004_jobs_resolved_model
"""

import sqlalchemy as sa
from alembic import op

# Spelled out here, not imported: a migration must keep meaning what it meant
# when it was written, whatever the live code later says.
FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS vector_store_chunks_fts USING fts5("
    "text, vector_store_id UNINDEXED, tokenize='trigram')"
)
FTS_FILL = (
    "INSERT INTO vector_store_chunks_fts(rowid, text, vector_store_id) "
    "SELECT id, text, vector_store_id FROM vector_store_chunks"
)

revision = "0005_keyword_terms"
down_revision = "0004_jobs_resolved_model"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vector_store_chunks", sa.Column("keyword_terms", sa.LargeBinary, nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS vector_store_chunks_fts")


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch table copy.
    op.drop_column("vector_store_chunks", "keyword_terms")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(FTS_DDL)
        op.execute(FTS_FILL)
