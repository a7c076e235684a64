"""The batch worker: validates input files, runs lines chunk by chunk, writes results.

One `step` does one unit of work on the oldest active batch: validate it, run
one chunk of its pending lines, or finish it. Each chunk's results and the
batch's `request_counts` are committed together, so the counts are live and a
killed server resumes where it stopped (lines in the chunk that was running are
run again; finished lines never are). Between chunks the worker yields for
`pause_s`, so interactive requests queued meanwhile go first.

A batch is claimed with a lease (owner + expiry), so several workers on one database
(API replicas, `tunelab worker`s) never run the same batch at once; a dead worker's
lease runs out, at once when it was a process on this machine that is gone (a killed
server); a live worker renews its leases from a thread of its own. Every write
proves the lease is still held, in the transaction that writes: a worker that was
too slow and lost its batch to another one writes nothing, so each line's result is
stored exactly once.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tunelab.batches.executors import Executor, Outcome
from tunelab.batches.lines import parse_input
from tunelab.batches.states import ACTIVE, transition
from tunelab.batches.tables import BatchItem, BatchRow
from tunelab.db import holders
from tunelab.db.base import Database, now
from tunelab.errors import NotFound
from tunelab.files import FileStore
from tunelab.ids import new_id, random_token

log = logging.getLogger("tunelab.batches")
LEASE_SECONDS = 60
ENDINGS = {  # how unfinished lines are reported when a batch stops early
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": ("batch_cancelled", "This request was not executed: the batch was cancelled."),
}


def output_line(
    custom_id: str, response: Outcome | None, error: dict[str, str] | None
) -> dict[str, Any]:
    return {
        "id": new_id("batch_req_"),
        "custom_id": custom_id,
        "response": None
        if response is None
        else {
            "status_code": response.status_code,
            "request_id": "req_" + random_token(24),
            "body": response.body,
        },
        "error": error,
    }


class BatchWorker:
    def __init__(
        self,
        db: Database,
        files: FileStore,
        executors: dict[str, Executor],
        *,
        poll_s: float = 0.5,
        pause_s: float = 0.02,
        lease_s: int = LEASE_SECONDS,
        clock: Callable[[], int] = now,
    ) -> None:
        self.db = db
        self.files = files
        self.executors = executors
        self.poll_s = poll_s
        self.pause_s = pause_s
        self.lease_s = lease_s
        self.clock = clock
        self.owner = holders.new_holder()
        self._stop = threading.Event()

    # -- the loop

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception:  # a bug must not kill the worker thread; log and go on
                log.exception("batch worker step failed")
                busy = False
            self._stop.wait(self.pause_s if busy else self.poll_s)

    @contextmanager
    def running(self) -> Iterator[BatchWorker]:
        thread = threading.Thread(target=self.run_forever, name="batch-worker", daemon=True)
        # Leases are renewed from a thread of their own: one chunk may take longer
        # than a lease (a slow model on a busy machine), and only a dead or hung
        # worker should lose its batch.
        heartbeat = holders.Heartbeat(self.renew_leases, self.lease_s / 4, "batch-leases")
        thread.start()
        heartbeat.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)
            heartbeat.stop()

    def renew_leases(self) -> None:
        """Extend the lease of every batch this worker holds."""
        with self.db.begin() as s:
            s.execute(
                update(BatchRow)
                .where(BatchRow.lease_owner == self.owner, BatchRow.status.in_(ACTIVE))
                .values(lease_until=self.clock() + self.lease_s)
                .execution_options(synchronize_session=False)
            )

    def step(self) -> bool:
        """Do one unit of work; False when no batch needs any."""
        batch = self._claim()
        if batch is None:
            return False
        if batch.status == "validating":
            self._validate(batch)
        elif batch.status == "in_progress":
            if self.clock() >= batch.expires_at:
                self._finish(batch, "expired")
            elif not self._run_chunk(batch):
                with self._batch(batch.id) as row:
                    if row is not None:
                        transition(row, "finalizing", self.clock())
        elif batch.status == "finalizing":
            self._finish(batch, "completed")
        elif batch.status == "cancelling":
            self._finish(batch, "cancelled")
        return True

    # -- claiming

    def _claim(self) -> BatchRow | None:
        """The oldest active batch nobody else holds, now leased to this worker."""
        t = self.clock()
        with self.db.begin() as s:
            candidates = s.execute(
                select(BatchRow.id, BatchRow.lease_owner, BatchRow.lease_until)
                .where(BatchRow.status.in_(ACTIVE))
                .order_by(BatchRow.created_at, BatchRow.id)
                .limit(16)
            ).all()
            for batch_id, owner, until in candidates:
                if not self._free(owner, until, t):
                    continue
                same = (
                    BatchRow.lease_owner.is_(None)
                    if owner is None
                    else BatchRow.lease_owner == owner
                )
                claimed = s.execute(  # compare-and-set: another worker may have just taken it
                    update(BatchRow)
                    .where(BatchRow.id == batch_id, same)
                    .values(lease_owner=self.owner, lease_until=t + self.lease_s)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    return s.get(BatchRow, batch_id)
        return None

    def _free(self, owner: str | None, until: int | None, t: int) -> bool:
        if owner is None or owner == self.owner or until is None or until < t:
            return True
        return holders.gone(owner)  # a worker on this machine whose process is gone

    @contextmanager
    def _batch(self, batch_id: str) -> Iterator[BatchRow | None]:
        """The batch row, fresh and locked (on PostgreSQL), inside one transaction;
        None when this worker no longer holds its lease (nothing is to be written)."""
        with self.db.begin() as s:
            row = s.get(BatchRow, batch_id, with_for_update=True, populate_existing=True)
            if row is None:
                raise NotFound(f"batch {batch_id} vanished")
            yield row if row.lease_owner == self.owner else None

    def _renew(self, s: Session, batch_id: str, **changes: Any) -> bool:
        """Extend this worker's lease (writing `changes` with it); False when it lost it.
        The UPDATE locks the row on PostgreSQL until the caller's transaction ends."""
        renewed = s.execute(
            update(BatchRow)
            .where(BatchRow.id == batch_id, BatchRow.lease_owner == self.owner)
            .values(lease_until=self.clock() + self.lease_s, **changes)
            .execution_options(synchronize_session=False)
        )
        return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]

    # -- validating

    def _validate(self, batch: BatchRow) -> None:
        try:
            path = self.files.path(self.files.get(batch.project, batch.input_file_id))
            parsed = parse_input(path, batch.endpoint)
            errors = [e.to_dict() for e in parsed.errors]
        except NotFound:
            parsed, errors = (
                None,
                [
                    {
                        "code": "file_not_found",
                        "message": f"The input file {batch.input_file_id} "
                        "was deleted before the batch started.",
                        "param": "input_file_id",
                        "line": None,
                    }
                ],
            )
        with self.db.begin() as s:
            row = s.get(BatchRow, batch.id, with_for_update=True, populate_existing=True)
            if row is None or row.lease_owner != self.owner or row.status != "validating":
                return  # lost, or cancelled meanwhile: the next step finishes it
            if parsed is None or errors:
                row.errors = errors
                transition(row, "failed", self.clock())
                return
            s.add_all(
                BatchItem(
                    batch_id=row.id,
                    line=r.line,
                    custom_id=r.custom_id,
                    body=r.body,
                    state="pending",
                    result=None,
                )
                for r in parsed.requests
            )
            row.total = len(parsed.requests)
            row.model = parsed.model
            transition(row, "in_progress", self.clock())

    # -- running

    def _run_chunk(self, batch: BatchRow) -> bool:
        """Run the next pending lines; False when none is left."""
        executor = self.executors[batch.endpoint]
        with self.db() as s:
            items = list(
                s.execute(
                    select(BatchItem)
                    .where(BatchItem.batch_id == batch.id, BatchItem.state == "pending")
                    .order_by(BatchItem.line)
                    .limit(executor.chunk_size)
                ).scalars()
            )
        if not items:
            return False
        results: list[tuple[BatchItem, Outcome | None, dict[str, str] | None]]
        try:
            outcomes = executor.run(batch.project, [it.body for it in items])
        except Exception as e:  # the engine failed: these lines fail, the batch goes on
            log.exception("batch %s: a chunk failed", batch.id)
            failure = {"code": "server_error", "message": f"The request failed: {e}"}
            results = [(it, None, failure) for it in items]
        else:
            results = [(it, o, None) for it, o in zip(items, outcomes, strict=True)]
        with self.db.begin() as s:
            if not self._renew(s, batch.id):
                return True  # another worker took the batch over: its results count
            done = failed = 0
            for it, outcome, error in results:
                ok = outcome is not None and outcome.status_code == 200
                s.execute(
                    update(BatchItem)
                    .where(
                        BatchItem.batch_id == batch.id,
                        BatchItem.line == it.line,
                        BatchItem.state == "pending",
                    )
                    .values(
                        state="done" if ok else "failed",
                        result=output_line(it.custom_id, outcome, error),
                    )
                )
                done, failed = done + ok, failed + (not ok)
            self._renew(
                s, batch.id, completed=BatchRow.completed + done, failed=BatchRow.failed + failed
            )
        return True

    # -- finishing

    def _finish(self, batch: BatchRow, ending: str) -> None:
        """Report unfinished lines (expired/cancelled), write the files, end the batch."""
        with self.db.begin() as s:
            if not self._renew(s, batch.id):
                return  # another worker took the batch over and finishes it
        if ending in ENDINGS:
            code, message = ENDINGS[ending]
            with self.db.begin() as s:
                if not self._renew(s, batch.id):
                    return
                pending = list(
                    s.execute(
                        select(BatchItem).where(
                            BatchItem.batch_id == batch.id, BatchItem.state == "pending"
                        )
                    ).scalars()
                )
                for it in pending:
                    it.state = "failed"
                    it.result = output_line(it.custom_id, None, {"code": code, "message": message})
                row = s.get(BatchRow, batch.id)
                if row is not None:
                    row.failed += len(pending)
        output = self._write_file(batch, "done", "output")
        errors = self._write_file(batch, "failed", "error")
        with self._batch(batch.id) as row:
            if row is None:
                return  # lost while writing the files; the new holder writes its own
            row.output_file_id, row.error_file_id = output, errors
            row.lease_owner = row.lease_until = None
            transition(row, ending, self.clock())

    def _write_file(self, batch: BatchRow, state: str, kind: str) -> str | None:
        """A batch_output file of the lines in `state`, in input order; None if none."""
        with tempfile.TemporaryFile() as out:
            count = 0
            with self.db() as s:
                results = s.execute(
                    select(BatchItem.result)
                    .where(BatchItem.batch_id == batch.id, BatchItem.state == state)
                    .order_by(BatchItem.line)
                ).scalars()
                for result in results:
                    out.write((_json(result) + "\n").encode())
                    count += 1
            if count == 0:
                return None
            out.seek(0)
            expires = self.clock() + batch.output_ttl if batch.output_ttl else None
            row = self.files.create(
                project=batch.project,
                filename=f"{batch.id}_{kind}.jsonl",
                purpose="batch_output",
                stream=out,
                expires_at=expires,
            )
            return row.id


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
