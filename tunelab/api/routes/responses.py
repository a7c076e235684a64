"""Responses API subset (`POST /v1/responses`): answers, grounded by `file_search`.

Generation goes through `app.state.inference` (the chat engine: base or fine-tuned
models); retrieval through the vector-store searcher set up by the vector_stores
routes. Streaming sends OpenAI's `response.*` events as SSE.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tunelab.api.deps import ProjectDep
from tunelab.errors import ModelUnavailable, TunelabError
from tunelab.protocol.responses import CreateResponse, Response
from tunelab.retrieval.answers import prepare, respond, start_stream, stream_events

router = APIRouter()


def _generator(request: Request) -> Any:
    generator = getattr(request.app.state, "inference", None)
    if generator is None:
        raise ModelUnavailable(
            "Text generation is not available on this server (no inference service); "
            "vector store search still works via /v1/vector_stores/{id}/search.",
            param="model",
        )
    return generator


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    try:
        for event in events:
            yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
    except TunelabError as e:
        # Headers are already sent: an `error` payload makes the SDK raise APIError.
        yield f"event: error\ndata: {json.dumps({'type': 'error', **e.to_dict()})}\n\n"


@router.post("/responses", response_model=None)
def create_response(
    body: CreateResponse, request: Request, project: ProjectDep
) -> Response | StreamingResponse:
    generator = _generator(request)
    prepared = prepare(request.app.state.searcher, project, body)
    if body.stream:
        return StreamingResponse(
            _sse(stream_events(start_stream(generator, project, body, prepared), body, prepared)),
            media_type="text/event-stream",
        )
    return respond(generator, project, body, prepared)
