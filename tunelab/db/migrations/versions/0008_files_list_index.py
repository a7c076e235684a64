"""An index for a project's file list in page order: (project, created_at, id).

The Files API and the dashboard list a project's files newest first, a page at a
time. With only the single-column indexes of 0001 the database sorted all of the
project's files for every page (86 ms a page at 10,000 files on SQLite vs 5 ms at
10); with this index a page reads just its own rows.

Revision ID: 0008_files_list_index
Revises: 0007_store_embedding_model
"""

from alembic import op

revision = "0008_files_list_index"
down_revision = "0007_store_embedding_model"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_files_project_created", "files", ["project", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_files_project_created", table_name="files")
