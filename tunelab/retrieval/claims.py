"""Which process indexes which file: ingestion claimed from `vector_store_files`.

Any API replica or worker on the database may index a file; exactly one does. A
claim is a conditional UPDATE (only an unheld row of the current attempt can be
taken) that writes the holder's name (`tunelab.db.holders`) and a heartbeat. The
holder heart-beats for all its files from a thread of its own, and ends a claim in
the transaction that ends the file (`release`), so nothing is written by a process
that lost its claim. Claims whose heartbeat is older than `stale_seconds`, or whose
holder was a process on this machine that is gone, are let go of by whichever
process notices, and the file is claimed again. `claims` counts the starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from tunelab.db import holders
from tunelab.db.base import Database
from tunelab.retrieval.tables import VectorStoreFileRow as Row


@dataclass(eq=False)
class Claim:
    """One attempt at indexing one file in one store."""

    store_id: str
    file_id: str
    attempt: int


class FileClaims:
    def __init__(
        self,
        db: Database,
        *,
        stale_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.stale_seconds = stale_seconds
        self.clock = clock
        self.holder = holders.new_holder()

    def take(self) -> tuple[Claim, int] | None:
        """Atomically take the oldest unheld file waiting to be indexed: the claim and
        how many times it was claimed before; None when there is none."""
        with self.db() as s:
            candidates = s.execute(
                select(Row.vector_store_id, Row.file_id, Row.attempt, Row.claims)
                .where(Row.status == "in_progress", Row.worker_id.is_(None))
                .order_by(Row.created_at)
                .limit(8)
            ).all()
        for store_id, file_id, attempt, before in candidates:
            claim = Claim(store_id, file_id, attempt)
            with self.db.begin() as s:
                taken = s.execute(
                    update(Row)
                    .where(*self._of(claim), Row.worker_id.is_(None))
                    .values(worker_id=self.holder, heartbeat_at=self.clock(), claims=Row.claims + 1)
                    .execution_options(synchronize_session=False)
                )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return claim, int(before)
        return None  # none waiting, or other processes were quicker

    def beat(self) -> None:
        """Prove this process is alive for every file it holds."""
        with self.db.begin() as s:
            s.execute(
                update(Row)
                .where(Row.worker_id == self.holder, Row.status == "in_progress")
                .values(heartbeat_at=self.clock())
                .execution_options(synchronize_session=False)
            )

    def recover_stale(self) -> int:
        """Let go of other processes' claims whose heartbeat is older than
        `stale_seconds`, or whose process on this machine is gone; how many."""
        now = self.clock()
        with self.db() as s:
            held = s.execute(
                select(Row.vector_store_id, Row.file_id, Row.worker_id, Row.heartbeat_at).where(
                    Row.status == "in_progress",
                    Row.worker_id.is_not(None),
                    Row.worker_id != self.holder,
                )
            ).all()
        n = 0
        for store_id, file_id, holder, beat in held:
            assert holder is not None  # selected for it
            if beat is not None and beat >= now - self.stale_seconds and not holders.gone(holder):
                continue
            same_beat = Row.heartbeat_at.is_(None) if beat is None else Row.heartbeat_at == beat
            with self.db.begin() as s:
                let_go = s.execute(  # only if nobody changed the claim since we looked
                    update(Row)
                    .where(
                        Row.vector_store_id == store_id,
                        Row.file_id == file_id,
                        Row.worker_id == holder,
                        same_beat,
                    )
                    .values(worker_id=None, heartbeat_at=None)
                    .execution_options(synchronize_session=False)
                )
            n += let_go.rowcount  # type: ignore[attr-defined]
        return n

    def current(self, claim: Claim) -> Row | None:
        """The file's row while this process still holds `claim` (heart-beating it);
        None once it lost it (detached, cancelled, re-attached, taken back)."""
        with self.db.begin() as s:
            return self.hold(s, claim)

    def hold(self, s: Session, claim: Claim) -> Row | None:
        """In the caller's transaction: prove `claim` is still held (a heartbeat whose
        UPDATE locks the row on PostgreSQL until the transaction ends) and return its
        row; None when this process no longer holds it."""
        beat = s.execute(
            update(Row)
            .where(*self._held(claim))
            .values(heartbeat_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        if beat.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return s.get(Row, (claim.store_id, claim.file_id), populate_existing=True)

    def release(self, s: Session, claim: Claim) -> Row | None:
        """Let go of `claim` in the transaction that ends the file; its row, or None when
        this process no longer held it (the row is then left alone). The UPDATE comes
        first so that, on PostgreSQL, it locks the row against a concurrent take-back."""
        let_go = s.execute(
            update(Row)
            .where(*self._held(claim))
            .values(worker_id=None, heartbeat_at=None)
            .execution_options(synchronize_session=False)
        )
        if let_go.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return s.get(Row, (claim.store_id, claim.file_id), populate_existing=True)

    def release_all(self) -> None:
        """Let go of everything this process holds (it is stopping)."""
        with self.db.begin() as s:
            s.execute(
                update(Row)
                .where(Row.worker_id == self.holder)
                .values(worker_id=None, heartbeat_at=None)
                .execution_options(synchronize_session=False)
            )

    def _of(self, claim: Claim) -> tuple[ColumnElement[bool], ...]:
        return (
            Row.vector_store_id == claim.store_id,
            Row.file_id == claim.file_id,
            Row.attempt == claim.attempt,
            Row.status == "in_progress",
        )

    def _held(self, claim: Claim) -> tuple[ColumnElement[bool], ...]:
        return (*self._of(claim), Row.worker_id == self.holder)
