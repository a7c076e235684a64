"""Ingestion claims on a real database: one taker, stale take-back, no writes once lost.

The processes of tests/test_replicas.py meet through these claims; here two
`FileClaims` (two indexers) race for the same rows, with a clock the test moves
instead of sleeping through heartbeats. The same race runs on PostgreSQL.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support import FakeClock, scratch_database
from tunelab.db.base import Database, migrate
from tunelab.retrieval.claims import Claim, FileClaims
from tunelab.retrieval.tables import VectorStoreFileRow

pytestmark = pytest.mark.unit


def database(url: str) -> Database:
    migrate(url)
    return Database(url)


def attach(db: Database, file_id: str, attempt: int = 1) -> None:
    with db.begin() as s:
        s.merge(
            VectorStoreFileRow(
                vector_store_id="vs_1",
                file_id=file_id,
                project="p",
                filename=f"{file_id}.txt",
                status="in_progress",
                max_chunk_tokens=800,
                chunk_overlap_tokens=400,
                attempt=attempt,
                created_at=1,
                worker_id=None,
                heartbeat_at=None,
                claims=0,
            )
        )


def row(db: Database, file_id: str) -> VectorStoreFileRow:
    with db() as s:
        r = s.get(VectorStoreFileRow, ("vs_1", file_id))
    assert r is not None
    return r


def race(db: Database, n: int) -> list[tuple[Claim, int] | None]:
    takers = [FileClaims(db) for _ in range(n)]
    barrier = threading.Barrier(n)
    won: list[tuple[Claim, int] | None] = [None] * n

    def take(i: int) -> None:
        barrier.wait()
        won[i] = takers[i].take()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_one_taker_stale_take_back_and_a_lost_claim_writes_nothing(tmp_path: Path) -> None:
    db = database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    attach(db, "file-a")
    won = [w for w in race(db, 4) if w is not None]
    assert len(won) == 1 and won[0][1] == 0  # one taker; never claimed before
    assert row(db, "file-a").claims == 1
    with db.begin() as s:  # done with it: its (never renewed) heartbeat plays no part below
        s.get(VectorStoreFileRow, ("vs_1", "file-a")).status = "completed"  # type: ignore[union-attr]

    clock = FakeClock()
    first, second = FileClaims(db, stale_seconds=30, clock=clock.time), FileClaims(db)
    attach(db, "file-b")
    taken = first.take()
    assert taken is not None
    claim = taken[0]
    assert second.recover_stale() == 0  # its heartbeat is fresh
    assert second.take() is None  # held: nobody else takes it
    clock.advance(10)
    first.beat()  # the heartbeat thread's work: alive, so kept
    rescuer = FileClaims(db, stale_seconds=30, clock=clock.time)
    clock.advance(25)
    assert rescuer.recover_stale() == 0
    clock.advance(10)  # 35 s since the last beat: stale
    assert rescuer.recover_stale() == 1
    retaken = rescuer.take()
    assert retaken is not None and retaken[1] == 1  # claimed once before
    assert first.current(claim) is None  # the first holder lost it...
    with db.begin() as s:
        assert first.release(s, claim) is None  # ...and cannot end it
    with db.begin() as s:
        ended = rescuer.release(s, retaken[0])
        assert ended is not None
        ended.status = "completed"
    r = row(db, "file-b")
    assert (r.status, r.worker_id, r.claims) == ("completed", None, 2)

    # A re-attach makes a new attempt: the old attempt's holder cannot touch it.
    attach(db, "file-c")
    old = rescuer.take()
    assert old is not None
    attach(db, "file-c", attempt=2)
    assert rescuer.current(old[0]) is None
    new = rescuer.take()
    assert new is not None and new[0].attempt == 2


def test_claims_are_atomic_on_postgres(postgres_url: str) -> None:
    db = database(scratch_database(postgres_url, "ingestion_claims"))
    for i in range(3):
        attach(db, f"file-{i}")
    taken = [w[0].file_id for w in race(db, 6) if w is not None]
    assert sorted(taken) == ["file-0", "file-1", "file-2"]  # each file to exactly one taker
    db.dispose()
