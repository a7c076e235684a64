"""Turning generated token ids into text deltas a client can show.

Byte-level tokenizers split one Chinese character or emoji over several tokens;
decoding a prefix of them gives U+FFFD. `IncrementalDetokenizer` only releases
text once the tokens decoded so far end on a complete character, so a stream
never shows mojibake and the deltas join up to the full decoded text.

`StopMatcher` finds stop strings in that text, across token boundaries, and
holds back a tail that could still turn into a stop string, so the stop text is
never sent to the client.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Decodes a growing list of token ids into complete-character text deltas.

    Decoding a window that starts a few tokens back (rather than only the new
    token) keeps tokenizers that add or strip spaces at word starts correct.
    """

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=self._skip))

    def push(self, token_id: int) -> str:
        """Add one token; return the newly complete text (maybe empty)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith(REPLACEMENT):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)
            return full[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever is left at the end. A character the generation stopped in the
        middle of (max_tokens reached inside an emoji) is dropped, not sent as U+FFFD."""
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self.ids)
        return full[len(prefix) :].rstrip(REPLACEMENT)


class StopMatcher:
    """Streams text through, cutting it at the first stop string."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        """Return (text safe to emit now, whether a stop string was hit)."""
        self._pending += delta
        if not self._stops:
            out, self._pending = self._pending, ""
            return out, False
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            out = self._pending[: min(hits)]
            self._pending = ""
            return out, True
        hold = self._held_tail()
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def _held_tail(self) -> int:
        """Length of the longest tail of the pending text that starts a stop string."""
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:k]):
                    best = k
                    break
        return best

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
