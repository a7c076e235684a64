"""Vector stores name the embedding model that indexed them, never an alias.

A store's chunks are embedded, and its queries searched, with the model in
`vector_stores.embedding_model`. Until now a store created while the default
embedding model was set to an OpenAI alias (`text-embedding-3-small`, ...) stored
the alias; the aliases now follow the default model, so such a store would start
searching with a different model than the one that embedded its chunks. Every alias
meant all-minilm-l6-v2 when those stores were written, so they get that id.

Revision ID: 0007_store_embedding_model
Revises: 0006_batches_uploads_responses
"""

from alembic import op

revision = "0007_store_embedding_model"
down_revision = "0006_batches_uploads_responses"
branch_labels = None
depends_on = None

# Spelled out here, not imported: what the aliases meant when those rows were written.
ALIASES_THEN = ("text-embedding-ada-002", "text-embedding-3-small", "text-embedding-3-large")
MODEL_THEN = "all-minilm-l6-v2"


def upgrade() -> None:
    names = ", ".join(f"'{a}'" for a in ALIASES_THEN)
    op.execute(
        f"UPDATE vector_stores SET embedding_model = '{MODEL_THEN}' "
        f"WHERE embedding_model IN ({names})"
    )


def downgrade() -> None:
    # The concrete id is what the alias meant; nothing to undo.
    pass
