"""Engine, sessions and migrations.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout, so
the API, the embedded worker and `tunelab worker` processes can share one file.
PostgreSQL works by URL. The schema is created and upgraded by Alembic
(`migrate(url)`), never by `create_all`, so a data dir from an older version
upgrades in place.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    pass


def now() -> int:
    """Timestamps are unix seconds, as OpenAI's `created_at` fields are."""
    return int(time.time())


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for `url`. On SQLite, `read_only` engines begin deferred (shared)
    transactions and refuse writes; the others take the write lock up front."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            # A write through a read session is a bug: make it fail loudly here
            # rather than as a lock-upgrade failure under load.
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        # Readers take no lock (WAL gives each a snapshot). Writers take the write
        # lock up front (IMMEDIATE), so a busy database makes them wait for the busy
        # timeout instead of failing with "database is locked" when a read-then-write
        # transaction finds its snapshot stale.
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class Database:
    """Sessions on one database, split by intent.

    `with db() as s:` reads (on SQLite: no lock, a consistent snapshot, writes
    refused); `with db.begin() as s:` is a write transaction, committed at the end
    of the block (on SQLite it holds the single write lock, so keep it short and
    never do model work inside it). On PostgreSQL both use one engine.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._read_engine = make_engine(url, read_only=True) if url.startswith("sqlite") else None
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self._read_engine or self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __call__(self) -> Session:
        """A read session."""
        return self._read()

    def begin(self) -> AbstractContextManager[Session]:
        """A write transaction."""
        return self._write.begin()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()


def migrate(url: str) -> None:
    """Bring the database schema to the newest revision."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")
