"""One choice's grammar, enforced token by token (llguidance).

Before each token is chosen, `mask` leaves only the tokens that keep the output
a prefix of something the grammar accepts (end-of-sequence only where the
output is complete); `advance` moves the grammar past the chosen token. When the
grammar can take nothing more (`done`), the choice ends with finish_reason
"stop". A grammar error raises `ConstraintFailed`, which the worker turns into a
failure of that one request: the rest of the batch goes on.

Building llguidance's view of a tokenizer takes a few seconds for a 50k
vocabulary, so it is done once per tokenizer and kept.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch

_tokenizers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class ConstraintFailed(RuntimeError):
    """The grammar rejected a token or could not be compiled."""


def ll_tokenizer(tokenizer: Any) -> Any:
    """llguidance's tokenizer for a transformers tokenizer (built once, then cached)."""
    with _lock:
        found = _tokenizers.get(tokenizer)
        if found is None:
            import llguidance.hf

            found = _tokenizers[tokenizer] = llguidance.hf.from_tokenizer(tokenizer)
        return found


class TokenConstraint:
    def __init__(self, tokenizer: Any, grammar: str, blocked: torch.Tensor) -> None:
        """`blocked`: token ids never allowed (special tokens that are not a stop)."""
        import llguidance
        import llguidance.torch as lt

        self._lt = lt
        llt = ll_tokenizer(tokenizer)
        self._matcher = llguidance.LLMatcher(llt, grammar)
        if self._matcher.is_error():
            raise ConstraintFailed(f"the grammar cannot be used: {self._matcher.get_error()}")
        self._bitmask = lt.allocate_token_bitmask(1, llt.vocab_size)
        self._vocab = int(llt.vocab_size)
        self._blocked = blocked

    @property
    def done(self) -> bool:
        """Nothing more can follow: the output is complete."""
        return bool(self._matcher.is_stopped())

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (one row, float32) with every disallowed token at -inf."""
        self._lt.fill_next_token_bitmask(self._matcher, self._bitmask, 0)
        if self._matcher.is_error():
            raise ConstraintFailed(self._matcher.get_error())
        row = logits[None, : self._vocab]
        self._lt.apply_token_bitmask_inplace(row, self._bitmask)
        logits[self._vocab :] = float("-inf")
        if len(self._blocked):
            logits[self._blocked] = float("-inf")
        if not torch.isfinite(logits).any():
            raise ConstraintFailed("the grammar allows no token here")
        return logits

    def advance(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise ConstraintFailed(
                f"token {token} does not fit the grammar: {self._matcher.get_error()}"
            )


def blocked_tokens(tokenizer: Any, stop_token_ids: frozenset[int]) -> torch.Tensor:
    """Special tokens a constrained choice may never produce (all but the stops)."""
    ids = sorted(set(getattr(tokenizer, "all_special_ids", [])) - stop_token_ids)
    return torch.tensor(ids, dtype=torch.long)
