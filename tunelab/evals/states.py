"""Eval run states: the one table of allowed moves, and the one function that makes them.

    queued -> in_progress -> completed | failed
      ^           |
      +-----------+  (the runner stopped, or its heartbeat went stale: re-queued)
    cancel: from queued or in_progress -> canceled   (OpenAI spells it with one l)

Every status change is a `Transition` applied by `apply`: one conditional
`UPDATE eval_runs ... WHERE id = :id AND status IN (:source)` (plus who must hold
the run), so two runners, or a runner and a cancel, racing for one run cannot both
win, on SQLite and PostgreSQL alike. The API (cancel), the runner (start, finish)
and recovery all come through here; no other module writes `status`, `worker_id`
or `heartbeat_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from tunelab.evals.tables import EvalRunRow

Status = Literal["queued", "in_progress", "completed", "failed", "canceled"]
STATUSES: tuple[Status, ...] = ("queued", "in_progress", "completed", "failed", "canceled")
TERMINAL: tuple[Status, ...] = ("completed", "failed", "canceled")
Holding = Literal["take", "keep", "release"]


@dataclass(frozen=True)
class Transition:
    name: str
    source: tuple[Status, ...]
    target: Status
    holding: Holding = "keep"


CANCEL = Transition("cancel", ("queued", "in_progress"), "canceled", "release")
START = Transition("start", ("queued",), "in_progress", "take")
COMPLETE = Transition("complete", ("in_progress",), "completed", "release")
FAIL = Transition("fail", ("in_progress",), "failed", "release")
REQUEUE = Transition("requeue", ("in_progress",), "queued", "release")

TRANSITIONS: tuple[Transition, ...] = (CANCEL, START, COMPLETE, FAIL, REQUEUE)


def apply(
    s: Session,
    run_id: str,
    t: Transition,
    *,
    now: float,
    worker_id: str | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    changes: dict[str, Any] | None = None,
) -> EvalRunRow | None:
    """Move the run along `t` if its status allows it now; the updated row, or None.

    `worker_id` is the runner that takes the run (holding "take", required), or
    else, when given, the runner that must hold it.
    """
    conditions: list[ColumnElement[bool]] = [
        EvalRunRow.id == run_id,
        EvalRunRow.status.in_(t.source),
        *where,
    ]
    values: dict[str, Any] = {"status": t.target, **(changes or {})}
    if t.holding == "take":
        if worker_id is None:
            raise ValueError(f"transition {t.name} takes the run: name the runner")
        conditions.append(EvalRunRow.worker_id.is_(None))
        values.update(worker_id=worker_id, heartbeat_at=now, attempts=EvalRunRow.attempts + 1)
    else:
        if worker_id is not None:
            conditions.append(EvalRunRow.worker_id == worker_id)
        if t.holding == "release":
            values.update(worker_id=None, heartbeat_at=None)
    if t.target in TERMINAL:
        values["finished_at"] = now
    if not _update(s, conditions, values):
        return None
    return s.get(EvalRunRow, run_id, populate_existing=True)


def heartbeat(
    s: Session, run_id: str, worker_id: str, now: float, changes: dict[str, Any] | None = None
) -> bool:
    """Prove `worker_id` still holds the in-progress run (writing `changes` with it);
    False when it lost it (cancelled, or taken back by recovery)."""
    return _update(
        s,
        [
            EvalRunRow.id == run_id,
            EvalRunRow.worker_id == worker_id,
            EvalRunRow.status == "in_progress",
        ],
        {"heartbeat_at": now, **(changes or {})},
    )


def _update(s: Session, conditions: Sequence[ColumnElement[bool]], values: dict[str, Any]) -> bool:
    result = s.execute(
        update(EvalRunRow)
        .where(*conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
