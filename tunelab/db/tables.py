"""Core tables: files, API keys, fine-tuned models. Features declare their own
tables in their packages (jobs, retrieval) on the same `Base`.

Every user-owned row has a `project`: queries always filter on it, so another
project's objects are invisible (404), in lists too.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tunelab.db.base import Base


class FileRow(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    filename: Mapped[str] = mapped_column(String(1024))
    purpose: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))  # uploaded | processed | error
    status_details: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    # A project's list in page order (migration 0007).
    __table_args__ = (Index("ix_files_project_created", "project", "created_at", "id"),)


class ApiKeyRow(Base):
    """Keys made with `tunelab keys create`; only a sha256 of the key is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    project: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class FineTunedModelRow(Base):
    """A servable fine-tune: a LoRA adapter dir or full weights, final or a checkpoint.

    A fine-tuning job's checkpoint is this one row, not a second table beside it: the
    checkpoint *is* a callable model (contract §2.6: `fine_tuned_model_checkpoint` is a
    model name, and the last checkpoint is the job's `fine_tuned_model`). So the row
    carries what the checkpoints API shows (`checkpoint_id`, `job_id`, `step`,
    `metrics`) and there is nothing to keep in sync: deleting the model removes the
    checkpoint with it, and a checkpoint without a model cannot exist. Rows registered
    by hand (not by a job) have no checkpoint_id.
    """

    __tablename__ = "fine_tuned_models"

    id: Mapped[str] = mapped_column(
        String(256), primary_key=True
    )  # ft:base:project:suffix:id8[:ckpt-step-N]
    project: Mapped[str] = mapped_column(String(128), index=True)
    base_model: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))  # lora | full
    # The weights directory: relative to the models dir ("<job>/step-<N>", each
    # process's own: tunelab.models.weights), or absolute (rows from before).
    path: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    checkpoint_id: Mapped[str | None] = mapped_column(
        String(64), nullable=True, unique=True, index=True
    )
    metrics: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
