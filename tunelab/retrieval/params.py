"""Checks of the parameters users give stores and files: chunking, attributes, expiry.

Each check raises InvalidRequest naming the offending field, before anything is written.
"""

from __future__ import annotations

from typing import Any

from tunelab import limits
from tunelab.errors import InvalidRequest
from tunelab.retrieval.chunking import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    MAX_MAX_TOKENS,
    MIN_MAX_TOKENS,
)

MAX_ATTRIBUTES = 16


def parse_chunking(
    strategy: dict[str, Any] | None, param: str = "chunking_strategy"
) -> tuple[int, int]:
    """(max_chunk_size_tokens, chunk_overlap_tokens) of an `auto` or `static` strategy."""
    if strategy is None or strategy.get("type") == "auto":
        return DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS
    if strategy.get("type") != "static" or not isinstance(strategy.get("static"), dict):
        raise InvalidRequest(
            f'\'{param}\' must be {{"type": "auto"}} or {{"type": "static", "static": '
            '{"max_chunk_size_tokens": N, "chunk_overlap_tokens": M}}.',
            param=param,
        )
    static = strategy["static"]
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
    if not isinstance(size, int) or not MIN_MAX_TOKENS <= size <= MAX_MAX_TOKENS:
        raise InvalidRequest(
            f"max_chunk_size_tokens must be an integer from {MIN_MAX_TOKENS} to {MAX_MAX_TOKENS}.",
            param=f"{param}.static.max_chunk_size_tokens",
        )
    if not isinstance(overlap, int) or not 0 <= overlap <= size // 2:
        raise InvalidRequest(
            "chunk_overlap_tokens must be an integer from 0 to half of max_chunk_size_tokens.",
            param=f"{param}.static.chunk_overlap_tokens",
        )
    return size, overlap


def check_attributes(attributes: Any, param: str = "attributes") -> dict[str, Any] | None:
    if attributes is None:
        return None
    if not isinstance(attributes, dict):
        raise InvalidRequest(f"'{param}' must be an object.", param=param)
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidRequest(f"'{param}' has more than {MAX_ATTRIBUTES} keys.", param=param)
    for key, value in attributes.items():
        if len(key) > 64:
            raise InvalidRequest(
                f"Attribute key '{key[:20]}...' is longer than 64 characters.", param=param
            )
        if isinstance(value, str) and len(value) > 512:
            raise InvalidRequest(f"Attribute '{key}' is longer than 512 characters.", param=param)
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidRequest(
                f"Attribute '{key}' must be a string, number or boolean.", param=f"{param}.{key}"
            )
        if isinstance(value, float):
            limits.finite(value, f"{param}.{key}")  # NaN would come back as null
        if isinstance(value, str):
            limits.text(value, f"{param}.{key}")
    return attributes


def check_expires_after(expires_after: Any) -> int | None:
    """Days after last activity, from {"anchor": "last_active_at", "days": 1..365}."""
    if expires_after is None:
        return None
    if not isinstance(expires_after, dict) or expires_after.get("anchor") != "last_active_at":
        raise InvalidRequest(
            'expires_after must be {"anchor": "last_active_at", "days": N}.',
            param="expires_after",
        )
    days = expires_after.get("days")
    if not isinstance(days, int) or not 1 <= days <= 365:
        raise InvalidRequest(
            "expires_after.days must be from 1 to 365.", param="expires_after.days"
        )
    return days


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's metadata limits: at most 16 keys, keys ≤64 and values ≤512 characters."""
    if metadata is None:
        return None
    if len(metadata) > 16:
        raise InvalidRequest("metadata has more than 16 keys.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequest(
                f"metadata '{key[:20]}': keys are at most 64 and values 512 characters.",
                param="metadata",
            )
    return metadata
