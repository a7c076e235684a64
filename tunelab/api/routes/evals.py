"""Evals API (contract-2 §15): evals, runs, output items, and each run's report page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tunelab.api.deps import EvalsDep, ProjectDep
from tunelab.api.pagination import list_page
from tunelab.protocol.evals import (
    Eval,
    EvalCreate,
    EvalDeleted,
    EvalRun,
    EvalUpdate,
    OutputItem,
    RunCreate,
    RunDeleted,
)

router = APIRouter()


@router.post("/evals", status_code=201)
def create_eval(body: EvalCreate, evals: EvalsDep, project: ProjectDep) -> Eval:
    return evals.create_eval(project, body)


@router.get("/evals")
def list_evals(
    evals: EvalsDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
    order: str = "asc",
    order_by: str = "created_at",
) -> dict[str, Any]:
    page, more = evals.list_evals(project, after=after, limit=limit, order=order, order_by=order_by)
    return list_page(page, more)


@router.get("/evals/{eval_id}")
def retrieve_eval(eval_id: str, evals: EvalsDep, project: ProjectDep) -> Eval:
    return evals.get_eval(project, eval_id)


@router.post("/evals/{eval_id}")
def update_eval(eval_id: str, body: EvalUpdate, evals: EvalsDep, project: ProjectDep) -> Eval:
    return evals.update_eval(project, eval_id, body)


@router.delete("/evals/{eval_id}")
def delete_eval(eval_id: str, evals: EvalsDep, project: ProjectDep) -> EvalDeleted:
    return evals.delete_eval(project, eval_id)


@router.post("/evals/{eval_id}/runs", status_code=201)
def create_run(
    eval_id: str, body: RunCreate, request: Request, evals: EvalsDep, project: ProjectDep
) -> EvalRun:
    # The report link points back at this server's dashboard, as the client reached it.
    base = str(request.base_url).rstrip("/")
    return evals.create_run(project, eval_id, body, report_base=base)


@router.get("/evals/{eval_id}/runs")
def list_runs(
    eval_id: str,
    evals: EvalsDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
    order: str = "asc",
    status: str | None = None,
) -> dict[str, Any]:
    page, more = evals.list_runs(
        project, eval_id, after=after, limit=limit, order=order, status=status
    )
    return list_page(page, more)


@router.get("/evals/{eval_id}/runs/{run_id}")
def retrieve_run(eval_id: str, run_id: str, evals: EvalsDep, project: ProjectDep) -> EvalRun:
    return evals.get_run(project, eval_id, run_id)


@router.post("/evals/{eval_id}/runs/{run_id}/cancel")
def cancel_run(eval_id: str, run_id: str, evals: EvalsDep, project: ProjectDep) -> EvalRun:
    return evals.cancel_run(project, eval_id, run_id)


@router.delete("/evals/{eval_id}/runs/{run_id}")
def delete_run(eval_id: str, run_id: str, evals: EvalsDep, project: ProjectDep) -> RunDeleted:
    return evals.delete_run(project, eval_id, run_id)


@router.get("/evals/{eval_id}/runs/{run_id}/output_items")
def list_output_items(
    eval_id: str,
    run_id: str,
    evals: EvalsDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
    order: str = "asc",
    status: str | None = None,
) -> dict[str, Any]:
    page, more = evals.list_output_items(
        project, eval_id, run_id, after=after, limit=limit, order=order, status=status
    )
    return list_page(page, more)


@router.get("/evals/{eval_id}/runs/{run_id}/output_items/{item_id}")
def retrieve_output_item(
    eval_id: str, run_id: str, item_id: str, evals: EvalsDep, project: ProjectDep
) -> OutputItem:
    return evals.get_output_item(project, eval_id, run_id, item_id)
