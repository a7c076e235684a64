"""A job's event log (contract §2.5): the rows `GET /fine_tuning/jobs/{id}/events` lists."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.orm import Session

from tunelab.ids import new_id
from tunelab.jobs.tables import Job, JobEvent
from tunelab.training.events import Level


def add_event(
    s: Session,
    job: Job,
    message: str,
    *,
    at: float,
    level: Level = "info",
    type_: Literal["message", "metrics"] = "message",
    data: dict[str, Any] | None = None,
) -> None:
    s.add(
        JobEvent(
            id=new_id("ftevent-"),
            project=job.project,
            job_id=job.id,
            created_at=at,
            level=level,
            type=type_,
            message=message,
            data=data,
        )
    )
