"""Batch tables: one row per batch and one per input line (the migration
`0006_batches_uploads_responses` creates exactly these).

A line's result is stored the moment it is computed, in the same transaction
that advances the batch's counts, so a killed server resumes a batch where it
stopped: finished lines are never run again and none is lost.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tunelab.db.base import Base


class BatchRow(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    in_progress_at: Mapped[int | None] = mapped_column(BigInteger)
    finalizing_at: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    failed_at: Mapped[int | None] = mapped_column(BigInteger)
    expired_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelling_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    # Seconds after which the output and error files expire (output_expires_after).
    output_ttl: Mapped[int | None] = mapped_column(Integer)
    # Which worker is running the batch, and until when its claim holds without renewal.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_batches_project_created", "project", "created_at"),)


class BatchItem(Base):
    """One input line: its request, and once run, its output-file line."""

    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based input line
    custom_id: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(8))  # pending | done | failed
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_batch_items_batch_state", "batch_id", "state"),)
