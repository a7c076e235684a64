"""The batch service (the API's side): create, read, list and cancel batches.

Creating a batch only records it (`validating`); the worker
(tunelab.batches.worker) reads the input file, runs the lines and writes the
result files. Content errors in the file therefore never fail `create`: the
batch becomes `failed` with per-line `errors`, as OpenAI's does.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunelab.batches.states import transition
from tunelab.batches.tables import BatchRow
from tunelab.db.base import Database, now
from tunelab.db.pagination import check_limit, paginate
from tunelab.errors import InvalidRequest, NotFound
from tunelab.files import FileStore
from tunelab.ids import new_id
from tunelab.protocol import batches as wire

WINDOW_SECONDS = {"24h": 86_400}


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > 16:
        raise InvalidRequest("'metadata' has more than 16 keys.", param="metadata")
    for k, v in metadata.items():
        if len(k) > 64 or len(v) > 512:
            raise InvalidRequest(
                "'metadata' keys are at most 64 characters and values at most 512.",
                param="metadata",
            )


class BatchService:
    def __init__(self, db: Database, files: FileStore, endpoints: tuple[str, ...]) -> None:
        self.db = db
        self.files = files
        self.endpoints = endpoints  # the endpoints this server can run in a batch

    def create(self, project: str, req: wire.BatchCreate) -> wire.Batch:
        if req.completion_window not in WINDOW_SECONDS:
            raise InvalidRequest(
                f"completion_window must be '24h', not {req.completion_window!r}.",
                param="completion_window",
            )
        if req.endpoint not in self.endpoints:
            raise InvalidRequest(
                f"Batches cannot run {req.endpoint!r} here; supported endpoints: "
                f"{', '.join(self.endpoints)}.",
                param="endpoint",
            )
        _check_metadata(req.metadata)
        ttl = None
        if req.output_expires_after is not None:
            if req.output_expires_after.anchor != "created_at":
                raise InvalidRequest(
                    "output_expires_after.anchor must be 'created_at'.",
                    param="output_expires_after.anchor",
                )
            ttl = req.output_expires_after.seconds
            if not 3600 <= ttl <= 2_592_000:
                raise InvalidRequest(
                    "output_expires_after.seconds must be between 3600 and 2592000.",
                    param="output_expires_after.seconds",
                )
        try:
            file = self.files.get(project, req.input_file_id)
        except NotFound:
            raise InvalidRequest(
                f"No input file with id '{req.input_file_id}'. Upload it first with "
                "client.files.create(file=..., purpose='batch').",
                param="input_file_id",
            ) from None
        if file.purpose != "batch":
            raise InvalidRequest(
                f"The input file {file.id} has purpose '{file.purpose}'; a batch needs a file "
                "uploaded with purpose 'batch'.",
                param="input_file_id",
            )
        created = now()
        row = BatchRow(
            id=new_id("batch_"),
            project=project,
            endpoint=req.endpoint,
            input_file_id=req.input_file_id,
            completion_window=req.completion_window,
            status="validating",
            created_at=created,
            expires_at=created + WINDOW_SECONDS[req.completion_window],
            total=0,
            completed=0,
            failed=0,
            metadata_=req.metadata,
            output_ttl=ttl,
        )
        with self.db.begin() as s:
            s.add(row)
        return to_wire(row)

    def _get(self, s: Session, project: str, batch_id: str) -> BatchRow:
        row = s.get(BatchRow, batch_id)
        if row is None or row.project != project:
            raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
        return row

    def get(self, project: str, batch_id: str) -> wire.Batch:
        with self.db() as s:
            return to_wire(self._get(s, project, batch_id))

    def list(self, project: str, *, after: str | None, limit: int) -> tuple[list[wire.Batch], bool]:
        check_limit(limit, 100)
        with self.db() as s:
            stmt = select(BatchRow).where(BatchRow.project == project)
            rows, more = paginate(s, stmt, BatchRow, after=after, limit=limit)
        return [to_wire(r) for r in rows], more

    def cancel(self, project: str, batch_id: str) -> wire.Batch:
        """Ask the worker to stop: lines already run stay in the output file."""
        with self.db.begin() as s:
            row = self._get(s, project, batch_id)
            transition(row, "cancelling", now())
        return to_wire(row)


def to_wire(row: BatchRow) -> wire.Batch:
    errors = None
    if row.errors:
        errors = wire.BatchErrors(data=[wire.BatchError(**e) for e in row.errors])
    return wire.Batch(
        id=row.id,
        endpoint=row.endpoint,
        model=row.model,
        errors=errors,
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        status=row.status,  # type: ignore[arg-type]
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        created_at=row.created_at,
        in_progress_at=row.in_progress_at,
        expires_at=row.expires_at,
        finalizing_at=row.finalizing_at,
        completed_at=row.completed_at,
        failed_at=row.failed_at,
        expired_at=row.expired_at,
        cancelling_at=row.cancelling_at,
        cancelled_at=row.cancelled_at,
        request_counts=wire.RequestCounts(
            total=row.total, completed=row.completed, failed=row.failed
        ),
        metadata=row.metadata_,
    )
