"""Fine-tuning jobs API (contract §2): create, list, retrieve, cancel, pause, resume,
events and checkpoints. `setup` runs the embedded worker inside `serve`."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request

from tunelab.api.deps import ProjectDep, ServicesDep
from tunelab.api.pagination import list_page
from tunelab.jobs.service import JobService
from tunelab.protocol.fine_tuning import Job, JobCreate
from tunelab.services import Services

router = APIRouter()


def setup(app: FastAPI, services: Services) -> AbstractContextManager[object] | None:
    if not services.settings.embedded_worker:
        return None
    from tunelab.jobs.worker import background_worker

    return background_worker(services)


def _metadata_filter(request: Request) -> dict[str, str] | None:
    # The SDK sends metadata={"k": "v"} as the deep-object query metadata[k]=v.
    found = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    return found or None


@router.post("/fine_tuning/jobs")
def create_job(body: JobCreate, services: ServicesDep, project: ProjectDep) -> Job:
    return JobService(services).create(project, body)


@router.get("/fine_tuning/jobs")
def list_jobs(
    request: Request,
    services: ServicesDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
) -> dict:
    jobs, more = JobService(services).list(
        project, after=after, limit=limit, metadata=_metadata_filter(request)
    )
    return list_page(jobs, more)


@router.get("/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, services: ServicesDep, project: ProjectDep) -> Job:
    return JobService(services).get(project, job_id)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, services: ServicesDep, project: ProjectDep) -> Job:
    return JobService(services).cancel(project, job_id)


@router.post("/fine_tuning/jobs/{job_id}/pause")
def pause_job(job_id: str, services: ServicesDep, project: ProjectDep) -> Job:
    return JobService(services).pause(project, job_id)


@router.post("/fine_tuning/jobs/{job_id}/resume")
def resume_job(job_id: str, services: ServicesDep, project: ProjectDep) -> Job:
    return JobService(services).resume(project, job_id)


@router.get("/fine_tuning/jobs/{job_id}/events")
def list_events(
    job_id: str,
    services: ServicesDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
) -> dict:
    events, more = JobService(services).events(project, job_id, after=after, limit=limit)
    return list_page(events, more)


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str,
    services: ServicesDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 10,
) -> dict:
    checkpoints, more = JobService(services).checkpoints(project, job_id, after=after, limit=limit)
    return list_page(checkpoints, more)
