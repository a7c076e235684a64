"""Batch API (contract §12): create, list, retrieve and cancel batches.

The work happens in the runtime's batch worker (tunelab.batches.worker); these
handlers only record and read batches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tunelab.api.deps import BatchesDep, ProjectDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.api.pagination import list_page
from tunelab.protocol.batches import Batch, BatchCreate

router = APIRouter(route_class=ApiRoute)


@router.post("/batches")
def create_batch(body: BatchCreate, batches: BatchesDep, project: ProjectDep) -> Batch:
    return batches.create(project, body)


@router.get("/batches")
def list_batches(
    batches: BatchesDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
) -> dict[str, Any]:
    page, more = batches.list(project, after=after, limit=limit)
    return list_page(page, more)


@router.get("/batches/{batch_id}")
def retrieve_batch(batch_id: str, batches: BatchesDep, project: ProjectDep) -> Batch:
    return batches.get(project, batch_id)


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(batch_id: str, batches: BatchesDep, project: ProjectDep) -> Batch:
    return batches.cancel(project, batch_id)
