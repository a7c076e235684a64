"""What POST /v1/embeddings does (contract §7), for the route and for batches alike.

`prepare` validates a request and turns its input into texts (400s name the
field); `respond` writes the response body for its vectors. The route embeds one
request, and lets the embedding worker count its tokens and check the limits
while it tokenises the batch anyway (one tokenisation per text); a batch counts
up front, so one oversized line fails alone, then embeds many prepared requests
in one call to the batching engine and answers each with `respond`, so both give
the same bytes.

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
from tunelab.embeddings.protocol import Embedder, TokenLimits
from tunelab.errors import InvalidRequest
from tunelab.models.registry import Registry
from tunelab.protocol.embeddings import EmbeddingRequest

LIMITS = TokenLimits(per_input=8192, per_request=300_000)


@dataclass(frozen=True)
class Prepared:
    request: EmbeddingRequest
    texts: list[str]
    # Known when the input came as token arrays, or when `prepare` was asked to count.
    token_counts: list[int] | None
    native_dimensions: int


def prepare(req: EmbeddingRequest, registry: Registry, emb: Embedder, *, count: bool) -> Prepared:
    """Validate `req`. With `count`, text inputs are tokenised here and checked
    against LIMITS; without, the caller has the embedding worker check them."""
    for name in req.model_extra or {}:  # implemented or refused, never ignored
        raise InvalidRequest(f"'{name}' is not supported by /v1/embeddings; remove it.", param=name)
    registry.get_kind(req.model, "embedding")
    inputs = embedding_inputs(
        req.input, req.model, is_alias=registry.is_alias(req.model), tokenizer=emb
    )
    counts = inputs.token_counts
    if counts is None and count:
        counts = emb.count_tokens(req.model, inputs.texts)
    if counts is not None:
        LIMITS.check(counts)
    native = emb.dimensions(req.model)
    if req.dimensions is not None and not 1 <= req.dimensions <= native:
        raise InvalidRequest(
            f"'dimensions' must be between 1 and {native} for model '{req.model}', "
            f"got {req.dimensions}.",
            param="dimensions",
        )
    return Prepared(req, inputs.texts, counts, native)


def respond(p: Prepared, vecs: np.ndarray, counts: list[int] | None = None) -> dict[str, Any]:
    """The response body for the prepared request's vectors (one row per text);
    `counts` are the texts' token counts when `prepare` did not count them."""
    req = p.request
    counts = p.token_counts if counts is None else counts
    assert counts is not None, "prepare(count=False) needs the worker's token counts"
    if req.dimensions is not None and req.dimensions < p.native_dimensions:
        vecs = vecs[:, : req.dimensions]
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    items: list[Any]
    if req.encoding_format == "base64":
        le = vecs.astype("<f4", copy=False)
        items = [base64.b64encode(row.tobytes()).decode("ascii") for row in le]
    else:
        items = vecs.tolist()
    total = sum(counts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "model": req.model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
