"""Fine-tuning tables: jobs (also the work queue) and their events.

Every row carries `project`; every query filters on it. Migrations `0002_jobs`,
`0004_jobs_resolved_model` and `0010_jobs_objective` create exactly these tables. A
job's checkpoints are rows of
the catalog's `fine_tuned_models` table (see `tunelab.db.tables.FineTunedModelRow`).
Only `tunelab.jobs.states` writes `status` and the worker bookkeeping columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tunelab.db.base import Base


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(256))  # as requested (may be an ft: model)
    # What creation resolved `model` to, stored so that nothing resolves it again:
    # the registry id of the base, and when `model` is a fine-tune to continue, its
    # kind ("lora" | "full") and weights directory (relative to the models dir, as
    # catalog rows name it: tunelab.models.weights). parent_path is None with a
    # parent_kind only for jobs migrated after their parent was deleted.
    base_model: Mapped[str] = mapped_column(String(256))
    parent_kind: Mapped[str | None] = mapped_column(String(16))
    parent_path: Mapped[str | None] = mapped_column(Text)
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64))
    # Requested hyperparameters ("auto" allowed) until validation, then resolved numbers.
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_examples: Mapped[int | None] = mapped_column(Integer)  # counted by file validation
    training_method: Mapped[str] = mapped_column(String(16))  # "lora" | "full"
    # What the job optimises: "supervised" (next-token loss on the answers) or "dpo"
    # (preference pairs; its beta is in hyperparameters). Migration 0010 adds it.
    objective: Mapped[str] = mapped_column(String(16), default="supervised")
    suffix: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(512))
    finished_at: Mapped[float | None] = mapped_column(Float)
    estimated_finish: Mapped[float | None] = mapped_column(Float)
    trained_tokens: Mapped[int | None] = mapped_column(Integer)
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Queue bookkeeping: which worker holds the job, its child pid, when it last
    # proved alive, and how many times the job was (re)started.
    worker_id: Mapped[str | None] = mapped_column(String(128))
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_jobs_project_created", "project", "created_at"),)


class JobEvent(Base):
    __tablename__ = "job_events"

    # seq orders events exactly (many share a second); id is the public cursor.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    project: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
