"""Evals tables: evals, their runs (also the work queue), and the runs' output items.

Every row carries `project` and every query filters on it. The migration
`0009_evals` creates exactly these tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tunelab.db.base import Base


class EvalRow(Base):
    __tablename__ = "evals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    # As echoed: {"type": "custom", "schema": {...}}; item_schema kept apart for checks.
    data_source_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    item_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    testing_criteria: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class EvalRunRow(Base):
    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128))
    eval_id: Mapped[str] = mapped_column(ForeignKey("evals.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str | None] = mapped_column(String(512))
    data_source: Mapped[dict[str, Any]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    error: Mapped[dict[str, str] | None] = mapped_column(JSON)
    n_items: Mapped[int] = mapped_column(Integer)
    # Counts of graded rows so far: {total, errored, failed, passed}.
    result_counts: Mapped[dict[str, int]] = mapped_column(JSON)
    # Tokens per model so far: {model: {invocation_count, prompt_tokens, completion_tokens}}.
    usage: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON)
    per_testing_criteria_results: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # A secret in report_url, so a person can open the report in a browser.
    report_base: Mapped[str] = mapped_column(Text)
    finished_at: Mapped[float | None] = mapped_column(Float)
    # Queue bookkeeping, as for jobs: who holds the run and when it last proved alive.
    worker_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_eval_runs_project_created", "project", "created_at"),)


class EvalOutputItemRow(Base):
    __tablename__ = "eval_output_items"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    eval_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    datasource_item_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(8))  # pass | fail
    errored: Mapped[bool] = mapped_column(Boolean)
    datasource_item: Mapped[dict[str, Any]] = mapped_column(JSON)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    sample: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("run_id", "datasource_item_id", name="uq_eval_output_items_run_row"),
        Index("ix_eval_output_items_run_created", "run_id", "created_at"),
    )
