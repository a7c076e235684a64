"""POST /v1/embeddings (contract §7).

The SDK asks for base64 by default and decodes little-endian float32 itself.
Token-array inputs are ids of the embedding model's own tokenizer (OpenAI's are
cl100k ids, which mean nothing to other models). Inputs longer than the model's
window are truncated to it, as sentence-transformers does; `usage` counts the
tokens sent.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tunelab.api.deps import EmbeddingsDep, ProjectDep, RegistryDep
from tunelab.embeddings.protocol import Embedder
from tunelab.errors import InvalidRequest
from tunelab.protocol.embeddings import EmbeddingRequest

router = APIRouter()

MAX_INPUTS = 2048
MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000


def _texts(req: EmbeddingRequest, emb: Embedder) -> tuple[list[str], list[int] | None]:
    """The request's inputs as texts, and their token counts when given as ids."""
    raw = req.input
    if isinstance(raw, str):
        raw = [raw]
    if not raw:
        raise InvalidRequest("'input' must not be empty.", param="input")
    if all(isinstance(x, int) for x in raw):  # one token array
        raw = [raw]  # type: ignore[list-item]
    if len(raw) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' has {len(raw)} items; at most {MAX_INPUTS} are allowed per request. "
            "Split it into several requests.",
            param="input",
        )
    if all(isinstance(x, str) for x in raw):
        for i, text in enumerate(raw):
            if not text:  # type: ignore[truthy-bool]
                raise InvalidRequest(
                    f"'input[{i}]' is an empty string; embeddings need text.", param="input"
                )
        return list(raw), None  # type: ignore[arg-type]
    vocab = emb.vocab_size(req.model)
    counts = []
    for i, ids in enumerate(raw):
        if not isinstance(ids, list) or not ids:
            raise InvalidRequest(f"'input[{i}]' must be a non-empty token array.", param="input")
        if any(not 0 <= t < vocab for t in ids):
            raise InvalidRequest(
                f"'input[{i}]' has token ids outside the model's vocabulary (0..{vocab - 1}).",
                param="input",
            )
        counts.append(len(ids))
    return emb.decode(req.model, raw), counts  # type: ignore[arg-type]


@router.post("/embeddings")
def create_embeddings(
    req: EmbeddingRequest, emb: EmbeddingsDep, registry: RegistryDep, project: ProjectDep
) -> JSONResponse:
    registry.get_kind(req.model, "embedding")
    texts, counts = _texts(req, emb)
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
