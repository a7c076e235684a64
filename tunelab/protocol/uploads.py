"""Uploads API wire shapes (contract §13)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from tunelab.protocol.batches import ExpiresAfter
from tunelab.protocol.files import FileObject


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bytes: int
    filename: str
    mime_type: str
    purpose: str
    expires_after: ExpiresAfter | None = None


class UploadComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_ids: list[str]
    md5: str | None = None


class Upload(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    file: FileObject | None = None


class UploadPart(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str
