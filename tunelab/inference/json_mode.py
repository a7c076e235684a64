"""`response_format: {"type": "json_object"}`: output that always parses as JSON.

Constrained decoding: a character-level JSON parser tracks where the output is,
and at each step only tokens whose text keeps the output a valid JSON prefix
(starting with an object) may be chosen; the best-ranked candidates are tried
first, so the model's preferences still decide. Once the top-level object
closes, the choice ends. If `max_tokens` cuts it short, `closing()` supplies the
characters that complete it (close the string, fill a missing value with null,
close brackets), so even a truncated answer parses; its finish_reason stays
"length" so the client can tell.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import torch

_vocab_cache: weakref.WeakKeyDictionary[Any, _Vocab] = weakref.WeakKeyDictionary()

_NUMBER_PREFIX = re.compile(r"-?(0|[1-9]\d*)?(\.\d*)?([eE][+-]?\d*)?")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_WS = " \t\n\r"
_MAX_WS_RUN = 8  # stops a model from padding forever with newlines/indentation
_CANDIDATES = 32


class _Vocab:
    """Each token's text, and token ids grouped by their first character."""

    def __init__(self, tokenizer: Any) -> None:
        self.texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        groups: dict[str, list[int]] = {}
        for tid, text in enumerate(self.texts):
            if text:
                groups.setdefault(text[0], []).append(tid)
        self.by_first_char = {ch: torch.tensor(ids) for ch, ids in groups.items()}


def _vocab(tokenizer: Any) -> _Vocab:
    vocab = _vocab_cache.get(tokenizer)
    if vocab is None:
        vocab = _vocab_cache[tokenizer] = _Vocab(tokenizer)
    return vocab


class _Parser:
    """A JSON prefix recogniser, one character at a time (copied to test candidates)."""

    __slots__ = ("_just_opened", "buf", "done", "escape", "is_key", "mode", "stack", "ws_run")

    def __init__(self) -> None:
        self.stack: list[str] = []
        # start | value | key_or_close | key | colon | after | string | number | literal | done
        self.mode = "start"
        self.buf = ""  # partial number, or the rest of a literal
        self.is_key = False
        self.escape = 0  # 0 none, -1 after backslash, n>0 hex digits still due
        self.ws_run = 0
        self.done = False
        # "value" right after "[": there "]" may close an empty array.
        self._just_opened = False

    def copy(self) -> _Parser:
        p = _Parser.__new__(_Parser)
        p.stack, p.mode, p.buf, p.is_key = list(self.stack), self.mode, self.buf, self.is_key
        p.escape, p.ws_run, p.done = self.escape, self.ws_run, self.done
        p._just_opened = self._just_opened
        return p

    def feed(self, ch: str) -> bool:
        m = self.mode
        if m == "string":
            return self._string(ch)
        if m == "number":
            if ch in "0123456789+-.eE" and _NUMBER_PREFIX.fullmatch(self.buf + ch):
                self.buf += ch
                return True
            if not _NUMBER.fullmatch(self.buf):
                return False
            self.mode = "after"
            return self.feed(ch)
        if m == "literal":
            if not self.buf or ch != self.buf[0]:
                return False
            self.buf = self.buf[1:]
            if not self.buf:
                self.mode = "after"
            return True
        if ch in _WS:
            if m == "done" or self.ws_run >= _MAX_WS_RUN:
                return False
            self.ws_run += 1
            return True
        self.ws_run = 0
        if m == "start":
            return self._open(ch) if ch == "{" else False
        if m in ("value", "key_or_close") and ch in "]}":
            if (
                m == "value" and ch == "]" and self.stack[-1] == "[" and self._just_opened
            ) or m == "key_or_close":
                return self._close(ch)
            return False
        if m == "value":
            return self._value(ch)
        if m in ("key", "key_or_close"):
            if ch != '"':
                return False
            self.mode, self.is_key = "string", True
            return True
        if m == "colon":
            if ch != ":":
                return False
            self.mode = "value"
            self._just_opened = False
            return True
        if m == "after":
            if ch == ",":
                self.mode = "key" if self.stack[-1] == "{" else "value"
                self._just_opened = False
                return True
            if ch in "]}":
                return self._close(ch)
            return False
        return False

    def _open(self, ch: str) -> bool:
        self.stack.append(ch)
        self.mode = "key_or_close" if ch == "{" else "value"
        self._just_opened = ch == "["
        return True

    def _close(self, ch: str) -> bool:
        if not self.stack or {"}": "{", "]": "["}[ch] != self.stack[-1]:
            return False
        self.stack.pop()
        self.mode = "after" if self.stack else "done"
        self.done = not self.stack
        return True

    def _value(self, ch: str) -> bool:
        self._just_opened = False
        if ch in "{[":
            return self._open(ch)
        if ch == '"':
            self.mode, self.is_key = "string", False
            return True
        if ch in "-0123456789":
            self.mode, self.buf = "number", ch
            return True
        for lit in ("true", "false", "null"):
            if ch == lit[0]:
                self.mode, self.buf = "literal", lit[1:]
                return True
        return False

    def _string(self, ch: str) -> bool:
        if self.escape == -1:
            if ch == "u":
                self.escape = 4
            elif ch in '"\\/bfnrt':
                self.escape = 0
            else:
                return False
            return True
        if self.escape > 0:
            if ch not in "0123456789abcdefABCDEF":
                return False
            self.escape -= 1
            return True
        if ch == "\\":
            self.escape = -1
        elif ch == '"':
            self.mode = "colon" if self.is_key else "after"
        elif ord(ch) < 0x20:
            return False
        return True

    def closing(self) -> str:
        """Characters that turn the current prefix into a complete JSON object."""
        out = ""
        m = self.mode
        if m == "start":
            return "{}"
        if m == "string":
            out += {-1: "n", 0: ""}.get(self.escape, "0" * max(self.escape, 0)) + '"'
            out += ":null" if self.is_key else ""
        elif m == "number":
            # a dangling "-", "1.", "1e" or "1e+" becomes valid with one more digit
            out += "" if _NUMBER.fullmatch(self.buf) else "0"
        elif m == "literal":
            out += self.buf
        elif m == "colon":
            out += ":null"
        elif m == "value" and not self._just_opened:
            out += "null"
        elif m == "key":
            out += '"":null'
        for opener in reversed(self.stack):
            out += "}" if opener == "{" else "]"
        return out


class JsonConstraint:
    """Masks logits so that the generated text stays a JSON object prefix."""

    def __init__(self, tokenizer: Any) -> None:
        self._vocab = _vocab(tokenizer)
        self._texts = self._vocab.texts
        self._parser = _Parser()

    @property
    def complete(self) -> bool:
        return self._parser.done

    def _accepts(self, tid: int, stop_ids: frozenset[int]) -> bool:
        if tid in stop_ids or tid >= len(self._texts) or not self._texts[tid]:
            return False
        p = self._parser.copy()
        return all(p.feed(ch) for ch in self._texts[tid])

    def mask(self, logits: torch.Tensor, stop_ids: frozenset[int]) -> torch.Tensor:
        """-inf for every token that would break the JSON, among the best ranked ones."""
        top = torch.topk(logits, min(_CANDIDATES, logits.shape[-1])).indices.tolist()
        allowed = [tid for tid in top if self._accepts(tid, stop_ids)]
        if not allowed:
            # The model's favourites all break the JSON (typical at structural
            # points): look only at tokens whose first character fits, best first.
            fits = [
                ids for ch, ids in self._vocab.by_first_char.items() if self._parser.copy().feed(ch)
            ]
            ids = torch.cat(fits)
            for tid in ids[torch.argsort(logits[ids], descending=True)].tolist():
                if self._accepts(tid, stop_ids):
                    allowed.append(tid)
                    if len(allowed) >= _CANDIDATES:
                        break
        out = torch.full_like(logits, float("-inf"))
        idx = torch.tensor(allowed, dtype=torch.long)
        out[idx] = logits[idx]
        return out

    def advance(self, token_id: int) -> None:
        for ch in self._texts[token_id]:
            self._parser.feed(ch)

    def closing(self) -> str:
        return "" if self._parser.done else self._parser.closing()
