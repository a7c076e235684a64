"""Ingestion is claimed from the database: who holds a file being indexed, since when
it last proved alive, and how many times indexing it was started.

Any API replica or worker can index a file; the one that claims it writes its name
(`worker_id`) and heart-beats (`heartbeat_at`); a claim whose heartbeat went stale
is taken back by another process. `claims` counts starts, so a file that kills its
indexer every time fails instead of being retried forever. Files that were being
indexed when this migration runs are unclaimed and are picked up again.

Revision ID: 0012_ingestion_claims
Revises: 0011_pgvector
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_ingestion_claims"
down_revision = "0011_pgvector"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vector_store_files", sa.Column("worker_id", sa.String(128), nullable=True))
    op.add_column("vector_store_files", sa.Column("heartbeat_at", sa.Float(), nullable=True))
    op.add_column(
        "vector_store_files",
        sa.Column("claims", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index(
        "ix_vector_store_files_status_worker", "vector_store_files", ["status", "worker_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_vector_store_files_status_worker", "vector_store_files")
    for column in ("claims", "heartbeat_at", "worker_id"):  # SQLite >= 3.35 drops in place
        op.drop_column("vector_store_files", column)
