"""Files API (contract §1): upload, list, retrieve, content, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse

from tunelab.api.deps import FilesDep, ProjectDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.api.pagination import list_page
from tunelab.db.base import now
from tunelab.db.pagination import check_limit
from tunelab.db.tables import FileRow
from tunelab.errors import InvalidRequest, PayloadTooLarge
from tunelab.files import check_purpose
from tunelab.protocol.common import Deleted
from tunelab.protocol.files import FileObject

router = APIRouter(route_class=ApiRoute)


def to_wire(row: FileRow) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
        status=row.status,
        status_details=row.status_details,
        expires_at=row.expires_at,
    )


@router.post("/files")
def upload_file(
    request: Request,
    files: FilesDep,
    project: ProjectDep,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
    expires_after_anchor: Annotated[str | None, Form(alias="expires_after[anchor]")] = None,
    expires_after_seconds: Annotated[int | None, Form(alias="expires_after[seconds]")] = None,
) -> FileObject:
    length = int(request.headers.get("content-length") or 0)
    if length > files.max_bytes + 1_000_000:
        raise PayloadTooLarge(
            f"File is larger than the limit of {files.max_bytes} bytes.",
            param="file",
        )
    check_purpose(purpose)
    filename = Path(file.filename or "upload").name
    expires_at = None
    if expires_after_seconds is not None:
        if expires_after_anchor not in (None, "created_at"):
            raise InvalidRequest(
                "expires_after[anchor] must be 'created_at'.", param="expires_after[anchor]"
            )
        if not 3600 <= expires_after_seconds <= 2592000:
            raise InvalidRequest(
                "expires_after[seconds] must be between 3600 and 2592000.",
                param="expires_after[seconds]",
            )
        expires_at = now() + expires_after_seconds
    row = files.create(
        project=project, filename=filename, purpose=purpose, stream=file.file, expires_at=expires_at
    )
    return to_wire(row)


@router.get("/files")
def list_files(
    files: FilesDep,
    project: ProjectDep,
    purpose: str | None = None,
    limit: Annotated[int, Query()] = 10000,
    order: str = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    check_limit(limit, 10000)
    rows, has_more = files.list(project, purpose=purpose, after=after, limit=limit, order=order)
    return list_page([to_wire(r) for r in rows], has_more)


@router.get("/files/{file_id}")
def retrieve_file(file_id: str, files: FilesDep, project: ProjectDep) -> FileObject:
    return to_wire(files.get(project, file_id))


@router.get("/files/{file_id}/content")
def file_content(file_id: str, files: FilesDep, project: ProjectDep) -> FileResponse:
    row = files.get(project, file_id)
    return FileResponse(
        files.path(row), media_type="application/octet-stream", filename=row.filename
    )


@router.delete("/files/{file_id}")
def delete_file(file_id: str, files: FilesDep, project: ProjectDep) -> Deleted:
    files.delete(project, file_id)
    return Deleted(id=file_id, object="file")
