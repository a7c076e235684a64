"""Vector stores record whether their first indexed document is mostly Latin script.

Hybrid search lets a query's words count only against a store written in the same
script (`search.Searcher`): an English question over Chinese pages shares with them
only stray option and file names, and on the cross-lingual questions of the
benchmark those matches put wrong pages ahead of what the dense half found
(docs/retrieval.md). `mostly_latin` is set, like `embedding_model`, by the first
document the store indexes; stores indexed before it was recorded keep NULL until
their next document is indexed, and are searched as before (keywords always count).

Revision ID: 0013_store_script
Revises: 0012_ingestion_claims
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_store_script"
down_revision = "0012_ingestion_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vector_stores", sa.Column("mostly_latin", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("vector_stores", "mostly_latin")  # SQLite >= 3.35 drops in place
