"""Every bound a request meets, in one place (the README's "Limits" table lists them).

Each limit keeps one tenant from using what others need: memory (body sizes,
choices, prompts, text lengths), a batch slot (prompts per request), or CPU time
(search queries, characters tokenised). A request over a limit gets a 400 (413 for
bodies) naming the parameter, never a retryable 5xx it could not get past.

The two body sizes are settings, because a deployment sizes them:
TUNELAB_MAX_REQUEST_BYTES (16 MiB: any body but a file upload) and
TUNELAB_MAX_UPLOAD_BYTES (512 MiB: one file or upload part), in `tunelab.settings`.
The rest are part of the API.

`text(...)` is the one check of a user-given string: its type, its length, and that it
is valid Unicode (JSON's `\\ud800` escape decodes to a lone surrogate, which no
tokenizer, database or JSON encoder downstream accepts).
"""

from __future__ import annotations

import math

from tunelab.errors import InvalidRequest

# -- bodies ------------------------------------------------------------------------------
MULTIPART_OVERHEAD_BYTES = 1024 * 1024  # form fields and boundaries around an upload

# -- generation -------------------------------------------------------------------------
MAX_N = 16  # choices per chat/completions request (each holds its own KV cache)
MAX_PROMPTS = 16  # prompts per /v1/completions request (each is a queued generation)

# -- embeddings and search --------------------------------------------------------------
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's
# Refused before tokenising: 8192 tokens (OpenAI's per-input limit) of 16 characters each.
MAX_EMBEDDING_INPUT_CHARS = 8192 * 16
# Bytes of one file a vector store indexes when its parser needs the whole document
# in memory (PDF, HTML, DOCX, JSON, JSONL, CSV, and text not in UTF-8). UTF-8 text and
# Markdown are read, chunked and embedded a window at a time, at any size
# (tunelab/retrieval/streaming.py).
MAX_INGEST_BYTES = 64 * 1024 * 1024
MAX_SEARCH_QUERIES = 16  # queries in one vector-store search
MAX_QUERY_CHARS = 8192  # characters of one search query

# -- names and short strings ------------------------------------------------------------
MAX_NAME_CHARS = 256  # vector store names
MAX_DESCRIPTION_CHARS = 512  # vector store descriptions
MAX_METADATA_KEYS = 16  # OpenAI's metadata limits
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


def unicode_error(value: str) -> str | None:
    """Why `value` is not valid Unicode text (a lone surrogate), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"it contains a lone surrogate (U+{ord(value[e.start]):04X}) at position {e.start}"
    return None


def text(value: object, param: str, *, max_chars: int | None = None, empty: bool = True) -> str:
    """`value` as a checked string, or a 400 naming `param`."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{param}' must be a string.", param=param)
    if not empty and not value:
        raise InvalidRequest(f"'{param}' must not be empty.", param=param)
    if max_chars is not None and len(value) > max_chars:
        raise InvalidRequest(
            f"'{param}' is {len(value)} characters long; the limit is {max_chars}.", param=param
        )
    why = unicode_error(value)
    if why is not None:
        raise InvalidRequest(f"'{param}' is not valid Unicode: {why}.", param=param)
    return value


def finite(value: float, param: str) -> float:
    """`value` unless it is NaN or infinite (which JSON cannot carry back)."""
    if not math.isfinite(value):
        raise InvalidRequest(f"'{param}' must be a finite number, got {value!r}.", param=param)
    return value
