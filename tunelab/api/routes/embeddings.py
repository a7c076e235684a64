"""POST /v1/embeddings (contract §7).

The SDK asks for base64 by default and decodes little-endian float32 itself.
Token-array inputs are ids of the embedding model's own tokenizer (OpenAI's are
cl100k ids, which mean nothing to other models). Inputs longer than the model's
window are truncated to it, as sentence-transformers does; `usage` counts the
tokens sent. Models with a query prefix (e5's "query: ") get it from the service.

The handler is async and awaits the embedding worker directly: no thread-pool hop,
and the texts are tokenised once, by the worker, together with the rest of its batch.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import cast

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tunelab.api.deps import EmbeddingsDep, ProjectDep, RegistryDep
from tunelab.embeddings.protocol import Embedder, TokenLimits
from tunelab.errors import InvalidRequest
from tunelab.protocol.embeddings import EmbeddingRequest

router = APIRouter()

MAX_INPUTS = 2048
LIMITS = TokenLimits(per_input=8192, per_request=300_000)


def _texts(req: EmbeddingRequest, emb: Embedder) -> tuple[list[str], list[int] | None]:
    """The request's inputs as texts, and their token counts when given as ids."""
    raw = req.input
    inputs: list[str] | list[list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif raw and all(isinstance(x, int) for x in raw):  # one token array
        inputs = [cast(list[int], raw)]
    else:
        inputs = cast(list[str] | list[list[int]], raw)
    if not inputs:
        raise InvalidRequest("'input' must not be empty.", param="input")
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' has {len(inputs)} items; at most {MAX_INPUTS} are allowed per request. "
            "Split it into several requests.",
            param="input",
        )
    texts = [x for x in inputs if isinstance(x, str)]
    if len(texts) == len(inputs):
        for i, text in enumerate(texts):
            if not text:
                raise InvalidRequest(
                    f"'input[{i}]' is an empty string; embeddings need text.", param="input"
                )
        return texts, None
    vocab = emb.vocab_size(req.model)
    arrays: list[list[int]] = []
    for i, ids in enumerate(inputs):
        if not isinstance(ids, list) or not ids:
            raise InvalidRequest(f"'input[{i}]' must be a non-empty token array.", param="input")
        if any(not 0 <= t < vocab for t in ids):
            raise InvalidRequest(
                f"'input[{i}]' has token ids outside the model's vocabulary (0..{vocab - 1}).",
                param="input",
            )
        arrays.append(ids)
    counts = [len(ids) for ids in arrays]
    LIMITS.check(counts)
    return emb.decode(req.model, arrays), counts


@router.post("/embeddings")
async def create_embeddings(
    req: EmbeddingRequest, emb: EmbeddingsDep, registry: RegistryDep, project: ProjectDep
) -> Response:
    registry.get_kind(req.model, "embedding")
    if not emb.loaded(req.model):  # loading (or converting) takes seconds: not on the loop
        await run_in_threadpool(emb.load, req.model)
    texts, given_counts = _texts(req, emb)
    native = emb.dimensions(req.model)
    if req.dimensions is not None and not 1 <= req.dimensions <= native:
        raise InvalidRequest(
            f"'dimensions' must be between 1 and {native} for model '{req.model}', "
            f"got {req.dimensions}.",
            param="dimensions",
        )
    done = await asyncio.wrap_future(
        emb.submit(req.model, texts, limits=None if given_counts else LIMITS)
    )
    vecs, counts = done.vectors, given_counts or done.token_counts
    if req.dimensions is not None and req.dimensions < native:
        vecs = vecs[:, : req.dimensions]
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    if req.encoding_format == "base64":
        le = vecs.astype("<f4", copy=False)
        items: list[str] | list[list[float]] = [
            base64.b64encode(row.tobytes()).decode("ascii") for row in le
        ]
    else:
        items = vecs.tolist()
    total = sum(counts)
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "model": req.model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
