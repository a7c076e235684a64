"""Uploads API (contract §13): a large file in parts, assembled into a File."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from tunelab.api.deps import ProjectDep, UploadsDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.db.base import now
from tunelab.db.tables import FileRow
from tunelab.errors import InvalidRequest
from tunelab.files import file_object
from tunelab.protocol.uploads import Upload, UploadComplete, UploadCreate, UploadPart
from tunelab.uploads import UploadRow, status_of

router = APIRouter(route_class=ApiRoute)


def to_wire(row: UploadRow, file: FileRow | None) -> Upload:
    return Upload(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        expires_at=row.expires_at,
        filename=row.filename,
        purpose=row.purpose,
        status=status_of(row, now()),  # type: ignore[arg-type]
        file=file_object(file) if file is not None else None,
    )


@router.post("/uploads")
def create_upload(body: UploadCreate, uploads: UploadsDep, project: ProjectDep) -> Upload:
    ttl = None
    if body.expires_after is not None:
        if body.expires_after.anchor != "created_at":
            raise InvalidRequest(
                "expires_after.anchor must be 'created_at'.", param="expires_after.anchor"
            )
        ttl = body.expires_after.seconds
    row = uploads.create(
        project,
        filename=body.filename,
        purpose=body.purpose,
        mime_type=body.mime_type,
        size=body.bytes,
        ttl=ttl,
    )
    return to_wire(row, None)


@router.post("/uploads/{upload_id}/parts")
def add_part(
    upload_id: str, data: Annotated[UploadFile, File()], uploads: UploadsDep, project: ProjectDep
) -> UploadPart:
    part = uploads.add_part(project, upload_id, data.file)
    return UploadPart(id=part.id, created_at=part.created_at, upload_id=upload_id)


@router.post("/uploads/{upload_id}/complete")
def complete_upload(
    upload_id: str, body: UploadComplete, uploads: UploadsDep, project: ProjectDep
) -> Upload:
    row, file = uploads.complete(project, upload_id, body.part_ids, md5=body.md5)
    return to_wire(row, file)


@router.post("/uploads/{upload_id}/cancel")
def cancel_upload(upload_id: str, uploads: UploadsDep, project: ProjectDep) -> Upload:
    return to_wire(uploads.cancel(project, upload_id), None)
