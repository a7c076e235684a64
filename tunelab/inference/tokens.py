"""How a single token is shown in logprobs: its text and its exact bytes.

Byte-level BPE tokens (GPT-2 style, SmolLM2) can hold part of a UTF-8
character, so their text alone would be U+FFFD; the `bytes` field carries the
real bytes, recovered through the byte-to-character table those tokenizers use.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table: dict[int, str] = bytes_to_unicode()  # type: ignore[no-untyped-call]  # untyped library
    return {ch: b for b, ch in table.items()}


def token_text(tokenizer: Any, token_id: int) -> str:
    return str(tokenizer.decode([token_id]))


def token_bytes(tokenizer: Any, token_id: int) -> list[int]:
    piece = tokenizer.convert_ids_to_tokens(token_id)
    table = _byte_decoder()
    if isinstance(piece, str) and piece and all(ch in table for ch in piece):
        return [table[ch] for ch in piece]
    return list(token_text(tokenizer, token_id).encode("utf-8"))
