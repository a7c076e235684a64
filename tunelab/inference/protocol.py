"""The chat-engine seam: what serving needs from whatever runs the model.

`InferenceEngine` (transformers, continuous batching, hot LoRA adapters)
implements it; a vLLM or llama.cpp backend, or a scripted test fake, plugs in
through the runtime. The service above it (`InferenceService`) owns everything
OpenAI-shaped: model resolution per project, chat templates, parameter checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tunelab.inference.handle import Generation, SamplingParams
from tunelab.models.registry import ModelSpec

# A transformers tokenizer (third-party, untyped): encode, decode, chat template.
Tokenizer = Any


@dataclass(frozen=True)
class Target:
    """What a model id resolves to: a base, a LoRA adapter on it, or full weights."""

    id: str
    base: ModelSpec
    kind: Literal["base", "lora", "full"]
    path: Path | None = None


class ChatEngine(Protocol):
    def tokenizer(self, target: Target) -> Tokenizer:
        """The tokenizer prompts for `target` are encoded with (loads the model if needed)."""
        ...

    def context_length(self, target: Target) -> int: ...

    def submit(self, target: Target, prompt_ids: list[int], params: SamplingParams) -> Generation:
        """Queue a generation; its events arrive on the returned handle. Raises
        Overloaded (503) when the model's queue is full."""
        ...

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per loaded model (tokens, steps, finishes, cancellations, ...)."""
        ...

    def close(self) -> None: ...
