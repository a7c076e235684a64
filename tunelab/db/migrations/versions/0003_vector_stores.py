"""Vector stores, their files and chunks (filled in by the retrieval issue).

Revision ID: 0003_vector_stores
Revises: 0002_jobs
"""

revision = "0003_vector_stores"
down_revision = "0002_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
