"""Vector stores, their files, file batches, chunks and (SQLite) the FTS5 keyword index.

On PostgreSQL the keyword index is a separate SQLite file under vectors_dir, created
by `tunelab.retrieval.index.KeywordIndex`, so this migration only adds it on SQLite.

Revision ID: 0003_vector_stores
Revises: 0002_jobs
"""

import sqlalchemy as sa
from alembic import op

# Spelled out here, not imported: a migration must keep meaning what it meant
# when it was written, whatever the live code later says.
FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS vector_store_chunks_fts USING fts5("
    "text, vector_store_id UNINDEXED, tokenize='trigram')"
)


revision = "0003_vector_stores"
down_revision = "0002_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False, index=True),
        sa.Column("name", sa.String(512), nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("metadata_json", sa.Text, nullable=True),
        sa.Column("expires_after_days", sa.Integer, nullable=True),
        sa.Column("embedding_model", sa.String(256), nullable=False),
        sa.Column("index_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("last_active_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "vector_store_files",
        sa.Column("vector_store_id", sa.String(64), primary_key=True),
        sa.Column("file_id", sa.String(64), primary_key=True, index=True),
        sa.Column("project", sa.String(128), nullable=False, index=True),
        sa.Column("filename", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error_code", sa.String(32), nullable=True),
        sa.Column("last_error_message", sa.Text, nullable=True),
        sa.Column("attributes_json", sa.Text, nullable=True),
        sa.Column("max_chunk_tokens", sa.Integer, nullable=False),
        sa.Column("chunk_overlap_tokens", sa.Integer, nullable=False),
        sa.Column("usage_bytes", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
    )
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False, index=True),
        sa.Column("vector_store_id", sa.String(64), nullable=False, index=True),
        sa.Column("cancelled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "vector_store_file_batch_files",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("file_id", sa.String(64), primary_key=True),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "vector_store_chunks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("start_char", sa.Integer, nullable=False),
        sa.Column("end_char", sa.Integer, nullable=False),
        sa.Column("n_tokens", sa.Integer, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_vector_store_chunks_store_file", "vector_store_chunks", ["vector_store_id", "file_id"]
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(FTS_DDL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS vector_store_chunks_fts")
    op.drop_index("ix_vector_store_chunks_store_file", "vector_store_chunks")
    for table in (
        "vector_store_chunks",
        "vector_store_file_batch_files",
        "vector_store_file_batches",
        "vector_store_files",
        "vector_stores",
    ):
        op.drop_table(table)
