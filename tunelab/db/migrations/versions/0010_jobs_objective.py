"""Jobs record what they optimise: `objective` "supervised" or "dpo" (preference pairs).

Existing jobs were all supervised. A DPO job's `beta` lives with its other
hyperparameters in the hyperparameters JSON.

Revision ID: 0010_jobs_objective
Revises: 0009_evals
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_jobs_objective"
down_revision = "0009_evals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("objective", sa.String(16), nullable=False, server_default="supervised"),
    )


def downgrade() -> None:
    op.drop_column("jobs", "objective")  # SQLite >= 3.35 drops columns in place
