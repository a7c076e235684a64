"""Job states: the one table of allowed moves, and the one function that makes them.

Status machine (contract §2.4):

    validating_files -> queued -> running -> succeeded | failed | cancelled
           |              ^  |       |
           +-> failed     |  +-> paused <-+   (pause; resume goes back to queued)
                          +-------------- running (worker shut down or died: re-queued)
    cancel: from validating_files, queued, running or paused

Every status change is a named `Transition` in `TRANSITIONS`, applied by `apply`:
one conditional `UPDATE jobs ... WHERE id = :id AND status IN (:source)` (plus who
must hold the job), so two actors racing for the same job cannot both win, on
SQLite and PostgreSQL alike; the job's events are written in the same transaction.
The API (cancel, pause, resume), the worker (validate, start, finish, shut down)
and crash recovery all come through here, and this is the only module that writes
`status` or the worker bookkeeping (`worker_id`, `pid`, `heartbeat_at`, `attempts`).

Who holds a job: a worker *takes* a job to validate or train it (the job must be
unheld), *keeps* it while the API cancels or pauses it (the worker notices, stops
the training process, then *releases* it), and *releases* it when it moves the job
on itself. A held job is never taken by another worker until recovery releases it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from tunelab.jobs.eventlog import add_event
from tunelab.jobs.tables import Job
from tunelab.training.events import Level

Status = Literal[
    "validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"
]
STATUSES: tuple[Status, ...] = (
    "validating_files",
    "queued",
    "running",
    "paused",
    "succeeded",
    "failed",
    "cancelled",
)
ACTIVE: tuple[Status, ...] = ("validating_files", "queued", "running", "paused")
TERMINAL: tuple[Status, ...] = ("succeeded", "failed", "cancelled")

Holding = Literal["take", "keep", "release"]


@dataclass(frozen=True)
class Transition:
    name: str
    source: tuple[Status, ...]  # in the order error messages list them
    target: Status
    holding: Holding = "keep"  # what happens to the worker that holds the job


# The API's moves: the worker that holds the job (if any) keeps it until its
# training process has stopped.
CANCEL = Transition("cancel", ("validating_files", "queued", "running", "paused"), "cancelled")
PAUSE = Transition("pause", ("running", "queued"), "paused")
RESUME = Transition("resume", ("paused",), "queued")
# The worker's moves.
TAKE_FOR_VALIDATION = Transition(
    "take_for_validation", ("validating_files",), "validating_files", "take"
)
VALIDATED = Transition("validated", ("validating_files",), "queued", "release")
INVALID_FILES = Transition("invalid_files", ("validating_files",), "failed", "release")
START = Transition("start", ("queued",), "running", "take")
SUCCEED = Transition("succeed", ("running",), "succeeded", "release")
FAIL = Transition("fail", ("running",), "failed", "release")
# Back to the queue, to resume from the newest checkpoint: the worker shut down, or
# its worker stopped heart-beating (recovery).
REQUEUE = Transition("requeue", ("running",), "queued", "release")

TRANSITIONS: tuple[Transition, ...] = (
    CANCEL,
    PAUSE,
    RESUME,
    TAKE_FOR_VALIDATION,
    VALIDATED,
    INVALID_FILES,
    START,
    SUCCEED,
    FAIL,
    REQUEUE,
)
# Every (from, to) pair some transition allows.
ALLOWED: frozenset[tuple[Status, Status]] = frozenset(
    (source, t.target) for t in TRANSITIONS for source in t.source
)


class JobChanges(TypedDict, total=False):
    """Columns written together with a status change."""

    hyperparameters: dict[str, Any]
    n_examples: int
    error: dict[str, str | None]
    fine_tuned_model: str
    finished_at: float
    trained_tokens: int
    result_files: list[str]


@dataclass(frozen=True)
class Note:
    """An event written with the transition (only when it happens)."""

    message: str
    level: Level = "info"


def apply(
    s: Session,
    job_id: str,
    t: Transition,
    *,
    now: float,
    worker_id: str | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    changes: JobChanges | None = None,
    notes: Sequence[Note] = (),
) -> Job | None:
    """Move the job along `t` if its status allows it now; the updated job, or None.

    `worker_id` is the worker that takes the job (holding "take", required), or
    else, when given, the worker that must hold it. `where` adds conditions (recovery
    checks the heartbeat it judged stale is still the one stored).
    """
    conditions: list[ColumnElement[bool]] = [Job.id == job_id, Job.status.in_(t.source), *where]
    values: dict[str, object] = {"status": t.target, "estimated_finish": None, **(changes or {})}
    if t.holding == "take":
        if worker_id is None:
            raise ValueError(f"transition {t.name} takes the job: name the worker")
        conditions.append(Job.worker_id.is_(None))
        values.update(worker_id=worker_id, pid=None, heartbeat_at=now)
        if t.target == "running":
            values["attempts"] = Job.attempts + 1
    else:
        if worker_id is not None:
            conditions.append(Job.worker_id == worker_id)
        if t.holding == "release":
            values.update(worker_id=None, pid=None, heartbeat_at=None)
    if not _update(s, conditions, values):
        return None
    job = s.get(Job, job_id, populate_existing=True)
    assert job is not None
    for note in notes:
        add_event(s, job, note.message, level=note.level, at=now)
    return job


def release(
    s: Session, job_id: str, worker_id: str, *, where: Sequence[ColumnElement[bool]] = ()
) -> bool:
    """Let go of a job without moving it (it was cancelled or paused meanwhile, or its
    worker died); True when `worker_id` held it."""
    return _update(
        s,
        [Job.id == job_id, Job.worker_id == worker_id, *where],
        {"worker_id": None, "pid": None, "heartbeat_at": None, "estimated_finish": None},
    )


def heartbeat(s: Session, job_id: str, worker_id: str, now: float) -> bool:
    """Prove `worker_id` is alive and still holds the job; False when it lost it."""
    return _update(s, [Job.id == job_id, Job.worker_id == worker_id], {"heartbeat_at": now})


def record_pid(s: Session, job_id: str, worker_id: str, pid: int) -> bool:
    return _update(s, [Job.id == job_id, Job.worker_id == worker_id], {"pid": pid})


def _update(
    s: Session, conditions: Sequence[ColumnElement[bool]], values: dict[str, object]
) -> bool:
    result = s.execute(
        update(Job).where(*conditions).values(**values).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
