"""Crash recovery: a job whose worker stopped heart-beating is never left `running`.

Any worker, on every tick, looks for jobs held by another worker whose heartbeat is
older than `worker_stale_seconds` on its clock. It re-queues a running job, which
resumes from its newest checkpoint, or fails it after MAX_ATTEMPTS starts with an
error event; a job in any other status is only let go of. Each of these is
conditional on the holder and the heartbeat it judged stale (so two rescuers cannot
both act, and a worker that heart-beats in time keeps its job). The old training
process exits by itself when its worker dies.
"""

from __future__ import annotations

from sqlalchemy import or_, select

from tunelab.clock import Clock
from tunelab.db.base import Database
from tunelab.jobs import states
from tunelab.jobs.tables import Job

MAX_ATTEMPTS = 3  # starts of one job before a crashing job is failed


def recover_stale(db: Database, worker_id: str, stale_seconds: float, clock: Clock) -> None:
    """Take back jobs whose worker stopped heart-beating: re-queue them, or fail them
    after MAX_ATTEMPTS."""
    now = clock.time()
    with db() as s:
        stale = s.execute(
            select(Job.id, Job.worker_id, Job.heartbeat_at, Job.attempts).where(
                Job.worker_id.is_not(None),
                Job.worker_id != worker_id,
                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < now - stale_seconds),
            )
        ).all()
    for job_id, holder, heartbeat, attempts in stale:
        assert holder is not None  # selected for it
        same_beat = (
            Job.heartbeat_at.is_(None) if heartbeat is None else Job.heartbeat_at == heartbeat
        )
        with db.begin() as s:
            if attempts >= MAX_ATTEMPTS:
                message = (
                    f"The training process stopped unexpectedly {attempts} times; the job has "
                    "failed. Check the server logs and the training log in the job directory."
                )
                moved = states.apply(
                    s,
                    job_id,
                    states.FAIL,
                    now=now,
                    worker_id=holder,
                    where=[same_beat],
                    changes={"error": {"code": "server_error", "message": message, "param": None}},
                    notes=[states.Note(message, level="error")],
                )
            else:
                note = states.Note(
                    "The worker running this job stopped; the job is queued again and resumes "
                    "from its last checkpoint",
                    level="warn",
                )
                moved = states.apply(
                    s,
                    job_id,
                    states.REQUEUE,
                    now=now,
                    worker_id=holder,
                    where=[same_beat],
                    notes=[note],
                )
            if moved is None:  # not running (validating, cancelled, paused): only let go
                states.release(s, job_id, holder, where=[same_beat])
