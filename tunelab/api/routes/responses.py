"""Responses API subset (`POST /v1/responses`): answers, grounded by `file_search`.

Streaming sends OpenAI's `response.*` events as server-sent events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Response as PlainResponse
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tunelab.api.deps import ProjectDep, ResponsesDep
from tunelab.api.disconnect import ClientGone, unless_disconnected
from tunelab.api.jsonbody import ApiRoute
from tunelab.api.pagination import list_page
from tunelab.errors import TunelabError
from tunelab.protocol.common import Deleted
from tunelab.protocol.responses import CreateResponse, Response

router = APIRouter(route_class=ApiRoute)


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    try:
        for event in events:
            yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
    except TunelabError as e:
        # Headers are already sent: an `error` payload makes the SDK raise APIError.
        yield f"event: error\ndata: {json.dumps({'type': 'error', **e.to_dict()})}\n\n"


@router.post("/responses", response_model=None)
async def create_response(
    body: CreateResponse, request: Request, responses: ResponsesDep, project: ProjectDep
) -> Response | StreamingResponse | PlainResponse:
    if body.stream:
        events = await run_in_threadpool(responses.stream, project, body)
        return StreamingResponse(_sse(events), media_type="text/event-stream")
    started = await run_in_threadpool(responses.start, project, body)
    sub = started.submitted
    try:
        choices = await unless_disconnected(request, sub.acollect(), [sub])
    except ClientGone:
        return PlainResponse(status_code=499)  # nobody is listening
    return await run_in_threadpool(responses.finish, project, body, started, choices[0])


@router.get("/responses/{response_id}")
def retrieve_response(
    response_id: str, responses: ResponsesDep, project: ProjectDep
) -> dict[str, Any]:
    return responses.get(project, response_id)


@router.delete("/responses/{response_id}")
def delete_response(response_id: str, responses: ResponsesDep, project: ProjectDep) -> Deleted:
    responses.delete(project, response_id)
    return Deleted(id=response_id, object="response")


@router.get("/responses/{response_id}/input_items")
def list_input_items(
    response_id: str,
    responses: ResponsesDep,
    project: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
    order: str = "desc",
) -> dict[str, Any]:
    items, more = responses.input_items(project, response_id, after=after, limit=limit, order=order)
    return list_page(items, more)
