"""What POST /v1/embeddings does (contract §7), for the route and for batches alike.

`prepare` validates a request and turns its input into texts (400s name the
field); `respond` writes the response body for its vectors. The route embeds one
request; a batch embeds many prepared requests in one call to the batching
engine and answers each with `respond`, so both give the same bytes.

The SDK asks for base64 by default and decodes little-endian float32 itself.
Inputs longer than the model's window are truncated to it, as
sentence-transformers does; `usage` counts the tokens sent.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.embeddings.inputs import embedding_inputs
from tunelab.embeddings.protocol import Embedder
from tunelab.errors import InvalidRequest
from tunelab.models.registry import Registry
from tunelab.protocol.embeddings import EmbeddingRequest

MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000


@dataclass(frozen=True)
class Prepared:
    request: EmbeddingRequest
    texts: list[str]
    token_counts: list[int]
    native_dimensions: int


def prepare(req: EmbeddingRequest, registry: Registry, emb: Embedder) -> Prepared:
    for name in req.model_extra or {}:  # implemented or refused, never ignored
        raise InvalidRequest(f"'{name}' is not supported by /v1/embeddings; remove it.", param=name)
    registry.get_kind(req.model, "embedding")
    inputs = embedding_inputs(
        req.input, req.model, is_alias=registry.is_alias(req.model), tokenizer=emb
    )
    counts = inputs.token_counts
    if counts is None:
        counts = emb.count_tokens(req.model, inputs.texts)
    for i, n in enumerate(counts):
        if n > MAX_TOKENS_PER_INPUT:
            raise InvalidRequest(
                f"'input[{i}]' has {n} tokens; the maximum is {MAX_TOKENS_PER_INPUT} per input.",
                param="input",
            )
    if sum(counts) > MAX_TOKENS_PER_REQUEST:
        raise InvalidRequest(
            f"The request has {sum(counts)} tokens; the maximum is "
            f"{MAX_TOKENS_PER_REQUEST} per request.",
            param="input",
        )
    native = emb.dimensions(req.model)
    if req.dimensions is not None and not 1 <= req.dimensions <= native:
        raise InvalidRequest(
            f"'dimensions' must be between 1 and {native} for model '{req.model}', "
            f"got {req.dimensions}.",
            param="dimensions",
        )
    return Prepared(req, inputs.texts, counts, native)


def respond(p: Prepared, vecs: np.ndarray) -> dict[str, Any]:
    """The response body for the prepared request's vectors (one row per text)."""
    req = p.request
    if req.dimensions is not None and req.dimensions < p.native_dimensions:
        vecs = vecs[:, : req.dimensions]
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    items: list[Any]
    if req.encoding_format == "base64":
        le = vecs.astype("<f4", copy=False)
        items = [base64.b64encode(row.tobytes()).decode("ascii") for row in le]
    else:
        items = vecs.tolist()
    total = sum(p.token_counts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "model": req.model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }


def create_embeddings(req: EmbeddingRequest, registry: Registry, emb: Embedder) -> dict[str, Any]:
    p = prepare(req, registry, emb)
    return respond(p, emb.embed(req.model, p.texts))
