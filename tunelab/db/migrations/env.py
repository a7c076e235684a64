"""Alembic environment: runs migrations against the URL set by tunelab.db.base.migrate."""

from alembic import context
from sqlalchemy import pool

from tunelab.db.base import make_engine

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = make_engine(url)
engine.pool = pool.NullPool(engine.pool._creator)

with engine.connect() as connection:
    context.configure(connection=connection, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
