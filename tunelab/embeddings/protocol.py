"""The embedder seam: what every feature needs from an embedding engine.

`EmbeddingService` (sentence-transformers, micro-batched) implements it; another
engine (a remote server, a test fake) plugs in through the runtime. Model ids are
registry ids of embedding models; an unknown or non-embedding id raises the
registry's 404/400.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from tunelab.errors import InvalidRequest

Vectors = npt.NDArray[np.float32]
# What a text is, for models trained with instructions (e5: "query: " / "passage: "):
# search queries and /v1/embeddings inputs are queries, indexed chunks are passages.
TextKind = Literal["query", "passage"]


@dataclass(frozen=True)
class TokenLimits:
    """Refuse a request (400 naming `input`) before any work when it is too long."""

    per_input: int
    per_request: int

    def check(self, counts: list[int]) -> None:
        for i, n in enumerate(counts):
            if n > self.per_input:
                raise InvalidRequest(
                    f"'input[{i}]' has {n} tokens; the maximum is {self.per_input} per input.",
                    param="input",
                )
        if sum(counts) > self.per_request:
            raise InvalidRequest(
                f"The request has {sum(counts)} tokens; the maximum is {self.per_request} "
                "per request. Split it into several requests.",
                param="input",
            )


@dataclass(frozen=True)
class Embedded:
    vectors: Vectors  # float32 [n, dims], L2-normalised, in input order
    token_counts: list[int]  # of each text as given: no prefix, no special tokens


class Embedder(Protocol):
    def embed(self, model: str, texts: list[str], *, kind: TextKind = "query") -> Vectors:
        """L2-normalised float32 vectors, one row per text, in order; the model's
        prefix for `kind` is added."""
        ...

    def submit(
        self,
        model: str,
        texts: list[str],
        *,
        kind: TextKind = "query",
        limits: TokenLimits | None = None,
    ) -> Future[Embedded]:
        """Queue texts; the Future raises InvalidRequest when they exceed `limits`."""
        ...

    def loaded(self, model: str) -> bool:
        """Whether the model is in memory (the first use loads it: seconds)."""
        ...

    def load(self, model: str) -> None: ...

    def count_tokens(self, model: str, texts: list[str]) -> list[int]: ...

    def decode(self, model: str, ids: list[list[int]]) -> list[str]:
        """Token-id inputs back to text, with the model's own tokenizer."""
        ...

    def vocab_size(self, model: str) -> int: ...

    def dimensions(self, model: str) -> int: ...

    def max_tokens(self, model: str) -> int:
        """The longest passage (special tokens included) embedded whole: the model's
        window less its passage prefix. Longer inputs are truncated."""
        ...

    def tokenizer(self, model: str) -> Any:
        """A private copy of the model's (transformers) tokenizer, for one thread."""
        ...

    def close(self) -> None: ...
