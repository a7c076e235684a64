"""Evals, eval runs (also the runners' queue) and their output items (tunelab.evals.tables).

Revision ID: 0009_evals
Revises: 0008_files_list_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_evals"
down_revision = "0008_files_list_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("metadata", sa.JSON),
        sa.Column("data_source_config", sa.JSON, nullable=False),
        sa.Column("item_schema", sa.JSON, nullable=False),
        sa.Column("testing_criteria", sa.JSON, nullable=False),
    )
    op.create_index("ix_evals_project", "evals", ["project"])
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column(
            "eval_id", sa.String(64), sa.ForeignKey("evals.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(512)),
        sa.Column("data_source", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON),
        sa.Column("error", sa.JSON),
        sa.Column("n_items", sa.Integer, nullable=False),
        sa.Column("result_counts", sa.JSON, nullable=False),
        sa.Column("usage", sa.JSON, nullable=False),
        sa.Column("per_testing_criteria_results", sa.JSON),
        sa.Column("report_base", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("worker_id", sa.String(128)),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_eval_runs_eval_id", "eval_runs", ["eval_id"])
    op.create_index("ix_eval_runs_status", "eval_runs", ["status"])
    op.create_index("ix_eval_runs_project_created", "eval_runs", ["project", "created_at"])
    op.create_table(
        "eval_output_items",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column(
            "run_id",
            sa.String(64),
            sa.ForeignKey("eval_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("eval_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("datasource_item_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("errored", sa.Boolean, nullable=False),
        sa.Column("datasource_item", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("sample", sa.JSON),
        sa.UniqueConstraint("run_id", "datasource_item_id", name="uq_eval_output_items_run_row"),
    )
    op.create_index(
        "ix_eval_output_items_run_created", "eval_output_items", ["run_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("eval_output_items")
    op.drop_table("eval_runs")
    op.drop_table("evals")
