"""The 2023 API (openai 0.27/0.28): legacy fine-tunes (contract §3.1) and engines (§18).

`/v1/fine-tunes` is a view over the fine-tuning jobs (tunelab.legacy.fine_tunes);
`?stream=true` on its events is what `openai api fine_tunes.follow` reads: past
events, then new ones as they happen, then `data: [DONE]` when the job ends.
`/v1/engines/{id}/...` is the 0.28 SDK's URL for `engine=`/`deployment_id=`: the
engine is the model (the body's `model` wins when both are given).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote_plus

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from tunelab.api.deps import (
    CatalogDep,
    EmbeddingsDep,
    InferenceDep,
    LegacyDep,
    ProjectDep,
    RegistryDep,
)
from tunelab.api.jsonbody import ApiRoute
from tunelab.api.routes import chat, embeddings
from tunelab.protocol import chat as c
from tunelab.protocol import completions as tc
from tunelab.protocol.embeddings import EmbeddingRequest
from tunelab.protocol.legacy import Engine, FineTune, FineTuneCreate

router = APIRouter(route_class=ApiRoute)


@router.post("/fine-tunes")
def create_fine_tune(body: FineTuneCreate, legacy: LegacyDep, project: ProjectDep) -> FineTune:
    return legacy.create(project, body)


@router.get("/fine-tunes")
def list_fine_tunes(legacy: LegacyDep, project: ProjectDep) -> dict[str, Any]:
    return {"object": "list", "data": [f.model_dump() for f in legacy.list_all(project)]}


@router.get("/fine-tunes/{fine_tune_id}")
def retrieve_fine_tune(fine_tune_id: str, legacy: LegacyDep, project: ProjectDep) -> FineTune:
    return legacy.get(project, fine_tune_id)


@router.post("/fine-tunes/{fine_tune_id}/cancel")
def cancel_fine_tune(fine_tune_id: str, legacy: LegacyDep, project: ProjectDep) -> FineTune:
    return legacy.cancel(project, fine_tune_id)


@router.get("/fine-tunes/{fine_tune_id}/events", response_model=None)
def fine_tune_events(
    fine_tune_id: str,
    legacy: LegacyDep,
    project: ProjectDep,
    stream: Annotated[bool, Query()] = False,
) -> dict[str, Any] | StreamingResponse:
    if not stream:
        events = legacy.events(project, fine_tune_id)
        return {"object": "list", "data": [e.model_dump() for e in events]}
    events_iter = legacy.follow(project, fine_tune_id)  # 404 now, before the stream starts

    def body() -> Iterator[str]:
        for event in events_iter:
            yield f"data: {event.model_dump_json()}\n\n"
        yield "data: [DONE]\n\n"

    # 0.28 reads a body as a stream only when the content type says event-stream.
    return StreamingResponse(body(), media_type="text/event-stream")


# -- engines ------------------------------------------------------------------------


def _engine_id(engine_id: str) -> str:
    # 0.28 quote_plus-es the engine into the path: "+" is a space there.
    return unquote_plus(engine_id)


@router.get("/engines")
def list_engines(catalog: CatalogDep, project: ProjectDep) -> dict[str, Any]:
    engines = [Engine(id=m.id, owner=m.owned_by, created=m.created) for m in catalog.list(project)]
    return {"object": "list", "data": [e.model_dump() for e in engines]}


@router.get("/engines/{engine_id}")
def retrieve_engine(engine_id: str, catalog: CatalogDep, project: ProjectDep) -> Engine:
    m = catalog.resolve(project, _engine_id(engine_id))
    return Engine(id=m.id, owner=m.owned_by, created=m.created)


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], engine_id: str, body: dict[str, Any]) -> M:
    """The body as the endpoint's request, its model named by the engine unless given."""
    try:
        return model.model_validate({**body, "model": body.get("model") or _engine_id(engine_id)})
    except ValidationError as e:  # answered like any invalid body: a 400 naming the field
        raise RequestValidationError([{**x, "loc": ("body", *x["loc"])} for x in e.errors()]) from e


@router.post("/engines/{engine_id}/completions", response_model=None)
async def engine_completion(
    engine_id: str,
    body: Annotated[dict[str, Any], Body()],
    request: Request,
    inference: InferenceDep,
    project: ProjectDep,
) -> tc.Completion | Response:
    req = _parse(tc.CompletionRequest, engine_id, body)
    return await chat.create_completion(req, request, inference, project)


@router.post("/engines/{engine_id}/chat/completions", response_model=None)
async def engine_chat_completion(
    engine_id: str,
    body: Annotated[dict[str, Any], Body()],
    request: Request,
    inference: InferenceDep,
    project: ProjectDep,
) -> c.ChatCompletion | Response:
    req = _parse(c.ChatCompletionRequest, engine_id, body)
    return await chat.create_chat_completion(req, request, inference, project)


@router.post("/engines/{engine_id}/embeddings", response_model=None)
async def engine_embeddings(
    engine_id: str,
    body: Annotated[dict[str, Any], Body()],
    emb: EmbeddingsDep,
    registry: RegistryDep,
    project: ProjectDep,
) -> Response:
    req = _parse(EmbeddingRequest, engine_id, body)
    return await embeddings.create_embeddings(req, emb, registry, project)
