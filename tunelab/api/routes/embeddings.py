"""POST /v1/embeddings (contract §7); tunelab.embeddings.endpoint does the checks
and writes the body.

The handler is async and awaits the embedding worker directly: no thread-pool hop,
and text inputs are tokenised once, by the worker, together with the rest of its
batch (which also counts their tokens and checks the limits). A model's first use
loads (or converts) it, which takes seconds: that happens in the thread pool.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tunelab.api.deps import EmbeddingsDep, ProjectDep, RegistryDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.embeddings import endpoint
from tunelab.protocol.embeddings import EmbeddingRequest

router = APIRouter(route_class=ApiRoute)


@router.post("/embeddings")
async def create_embeddings(
    req: EmbeddingRequest, emb: EmbeddingsDep, registry: RegistryDep, project: ProjectDep
) -> Response:
    model = registry.get_kind(req.model, "embedding").id
    if not emb.loaded(model):
        await run_in_threadpool(emb.load, model)
    p = endpoint.prepare(req, registry, emb, count=False)
    limits = None if p.token_counts is not None else endpoint.LIMITS
    done = await asyncio.wrap_future(emb.submit(req.model, p.texts, limits=limits))
    body = endpoint.respond(p, done.vectors, done.token_counts if limits else None)
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
