"""Crash recovery: a job whose worker stopped heart-beating is never left `running`.

Any worker, on every tick, looks for jobs held by another worker whose heartbeat is
older than `worker_stale_seconds`. It lets go of them with a conditional UPDATE (so
two rescuers cannot both act), then re-queues a running job, which resumes from its
newest checkpoint, or fails it after MAX_ATTEMPTS starts with an error event. The
old training process exits by itself when its worker dies.
"""

from __future__ import annotations

import time

from sqlalchemy import or_, select, update

from tunelab.db.base import Database
from tunelab.jobs.service import add_event
from tunelab.jobs.tables import Job

MAX_ATTEMPTS = 3  # starts of one job before a crashing job is failed


def recover_stale(db: Database, worker_id: str, stale_seconds: float) -> None:
    """Take back jobs whose worker stopped heart-beating: re-queue them, or fail them after MAX_ATTEMPTS."""
    cutoff = time.time() - stale_seconds
    with db() as s:
        stale = s.execute(
            select(Job.id, Job.worker_id, Job.heartbeat_at).where(
                Job.worker_id.is_not(None),
                Job.worker_id != worker_id,
                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff),
            )
        ).all()
    for job_id, holder, heartbeat in stale:
        with db.begin() as s:
            same_beat = (
                Job.heartbeat_at.is_(None) if heartbeat is None else Job.heartbeat_at == heartbeat
            )
            taken = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker_id == holder, same_beat)
                .values(worker_id=None, pid=None)
            )
            job = s.get(Job, job_id)
            if taken.rowcount != 1 or job is None or job.status != "running":  # type: ignore[attr-defined]
                continue
            if job.attempts >= MAX_ATTEMPTS:
                message = (
                    f"The training process stopped unexpectedly {job.attempts} times; the job has failed. "
                    "Check the server logs and the training log in the job directory."
                )
                job.status, job.error = (
                    "failed",
                    {"code": "server_error", "message": message, "param": None},
                )
                add_event(s, job, message, level="error")
            else:
                job.status = "queued"
                add_event(
                    s,
                    job,
                    "The worker running this job stopped; the job is queued again and resumes "
                    "from its last checkpoint",
                    level="warn",
                )
