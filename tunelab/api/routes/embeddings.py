"""POST /v1/embeddings (contract §7).

The SDK asks for base64 by default and decodes little-endian float32 itself.
Token arrays under OpenAI's embedding names are cl100k_base ids, decoded to text
(tunelab.embeddings.inputs); under the model's own name they are its tokenizer's. Inputs longer than the model's
window are truncated to it, as sentence-transformers does; `usage` counts the
tokens sent.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tunelab.api.deps import ProjectDep, ServicesDep
from tunelab.embeddings.inputs import embedding_inputs
from tunelab.errors import InvalidRequest
from tunelab.protocol.embeddings import EmbeddingRequest

router = APIRouter()

MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000


@router.post("/embeddings")
def create_embeddings(
    req: EmbeddingRequest, services: ServicesDep, project: ProjectDep
) -> JSONResponse:
    emb = services.embeddings
    services.registry.get_kind(req.model, "embedding")
    inputs = embedding_inputs(
        req.input, req.model, is_alias=services.registry.is_alias(req.model), tokenizer=emb
    )
    texts, counts = inputs.texts, inputs.token_counts
    if counts is None:
        counts = emb.count_tokens(req.model, texts)
    for i, n in enumerate(counts):
        if n > MAX_TOKENS_PER_INPUT:
            raise InvalidRequest(
                f"'input[{i}]' has {n} tokens; the maximum is {MAX_TOKENS_PER_INPUT} per input.",
                param="input",
            )
    if sum(counts) > MAX_TOKENS_PER_REQUEST:
        raise InvalidRequest(
            f"The request has {sum(counts)} tokens; the maximum is {MAX_TOKENS_PER_REQUEST} per request.",
            param="input",
        )
    native = emb.dimensions(req.model)
    if req.dimensions is not None and not 1 <= req.dimensions <= native:
        raise InvalidRequest(
            f"'dimensions' must be between 1 and {native} for model '{req.model}', got {req.dimensions}.",
            param="dimensions",
        )
    vecs = emb.embed(req.model, texts)
    if req.dimensions is not None and req.dimensions < native:
        vecs = vecs[:, : req.dimensions]
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    if req.encoding_format == "base64":
        le = vecs.astype("<f4", copy=False)
        items = [base64.b64encode(row.tobytes()).decode("ascii") for row in le]
    else:
        items = vecs.tolist()
    total = sum(counts)
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)
            ],
            "model": req.model,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
    )
