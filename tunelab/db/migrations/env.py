"""Alembic environment: runs migrations against the URL set by tunelab.db.base.migrate."""

from alembic import context
from sqlalchemy import pool, text

from tunelab.db.base import make_engine

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = make_engine(url)
engine.pool = pool.NullPool(engine.pool._creator)

with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        # API replicas and workers starting together all migrate: one at a time, the
        # others then find the schema current. The lock is the session's; it ends
        # with the connection.
        connection.execute(text("SELECT pg_advisory_lock(hashtext('tunelab-migrations'))"))
        connection.commit()
    context.configure(connection=connection, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
