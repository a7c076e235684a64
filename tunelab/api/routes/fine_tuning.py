"""Fine-tuning jobs API (contract §2): create, list, retrieve, cancel, pause, resume,
events and checkpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tunelab.api.deps import JobsDep, ProjectDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.api.pagination import list_page
from tunelab.protocol.fine_tuning import Job, JobCreate

router = APIRouter(route_class=ApiRoute)


def _metadata_filter(request: Request) -> dict[str, str] | None:
    # The SDK sends metadata={"k": "v"} as the deep-object query metadata[k]=v.
    found = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    return found or None


@router.post("/fine_tuning/jobs")
def create_job(body: JobCreate, jobs: JobsDep, project: ProjectDep) -> Job:
    return jobs.create(project, body)


@router.get("/fine_tuning/jobs")
def list_jobs(
    request: Request,
    jobs: JobsDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
) -> dict[str, Any]:
    page, more = jobs.list(project, after=after, limit=limit, metadata=_metadata_filter(request))
    return list_page(page, more)


@router.get("/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, jobs: JobsDep, project: ProjectDep) -> Job:
    return jobs.get(project, job_id)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, jobs: JobsDep, project: ProjectDep) -> Job:
    return jobs.cancel(project, job_id)


@router.post("/fine_tuning/jobs/{job_id}/pause")
def pause_job(job_id: str, jobs: JobsDep, project: ProjectDep) -> Job:
    return jobs.pause(project, job_id)


@router.post("/fine_tuning/jobs/{job_id}/resume")
def resume_job(job_id: str, jobs: JobsDep, project: ProjectDep) -> Job:
    return jobs.resume(project, job_id)


@router.get("/fine_tuning/jobs/{job_id}/events")
def list_events(
    job_id: str,
    jobs: JobsDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
) -> dict[str, Any]:
    events, more = jobs.events(project, job_id, after=after, limit=limit)
    return list_page(events, more)


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str,
    jobs: JobsDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 10,
) -> dict[str, Any]:
    checkpoints, more = jobs.checkpoints(project, job_id, after=after, limit=limit)
    return list_page(checkpoints, more)
