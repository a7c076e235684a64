"""The embedder seam: what every feature needs from an embedding engine.

`EmbeddingService` (sentence-transformers, micro-batched) implements it; another
engine (a remote server, a test fake) plugs in through the runtime. Model ids are
registry ids of embedding models; an unknown or non-embedding id raises the
registry's 404/400.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    def embed(self, model: str, texts: list[str]) -> Vectors:
        """L2-normalised float32 vectors, one row per text, in order."""
        ...

    def count_tokens(self, model: str, texts: list[str]) -> list[int]: ...

    def decode(self, model: str, ids: list[list[int]]) -> list[str]:
        """Token-id inputs back to text, with the model's own tokenizer."""
        ...

    def vocab_size(self, model: str) -> int: ...

    def dimensions(self, model: str) -> int: ...

    def max_tokens(self, model: str) -> int:
        """The model's window: longer inputs are truncated to it."""
        ...

    def tokenizer(self, model: str) -> Any:
        """A private copy of the model's (transformers) tokenizer, for one thread."""
        ...

    def close(self) -> None: ...
