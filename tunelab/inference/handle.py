"""A submitted generation and the events that flow back from the worker.

This is the contract between the serving side and any chat engine, so it holds
plain data only (no torch).

The worker thread pushes `Delta`, `Finished` and `Failed` events into the
`Generation`; a consumer reads them synchronously (`events()`) or from asyncio
(`aevents()`), and calls `cancel()` when its client goes away, which makes the
worker drop the request's rows at its next step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    # An llguidance grammar (inference.grammars) every choice must follow, or None.
    grammar: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter directory, named by a key that is safe as a peft adapter name."""

    key: str
    path: Path


@dataclass(frozen=True)
class Delta:
    index: int
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class Finished:
    index: int
    finish_reason: str  # "stop" | "length"
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Delta | Finished | Failed


class Generation:
    """One request: a prompt, its sampling parameters, `n` choices to produce."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        stop_token_ids: frozenset[int],
        adapter: AdapterRef | None = None,
    ) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.stop_token_ids = stop_token_ids
        self.adapter = adapter
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._stopped: set[int] = set()  # choices to end early (see stop_choice)
        self._wake: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def stop_choice(self, index: int) -> None:
        """End one choice at the next step with finish_reason "stop" (its consumer has
        what it needs); the others go on. A `Finished` event still follows."""
        with self._lock:
            self._stopped.add(index)

    def choice_stopped(self, index: int) -> bool:
        with self._lock:
            return index in self._stopped

    def put(self, event: Event) -> None:
        """Called by the worker thread."""
        self._events.put(event)
        with self._lock:
            wake = self._wake
        if wake is not None:
            wake()

    def events(self) -> Iterator[Event]:
        """Blocking iteration until every choice has finished (or one failure)."""
        remaining = self.params.n
        while remaining:
            event = self._events.get()
            yield event
            if isinstance(event, Failed):
                return
            if isinstance(event, Finished):
                remaining -= 1

    async def aevents(self) -> AsyncIterator[Event]:
        """The same events for an asyncio consumer, without tying up a thread each."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        with self._lock:
            self._wake = lambda: _discard(loop.call_soon_threadsafe(ready.set))
        remaining = self.params.n
        while remaining:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                await ready.wait()
                ready.clear()
                continue
            yield event
            if isinstance(event, Failed):
                return
            if isinstance(event, Finished):
                remaining -= 1


def _discard(_: object) -> None:
    return None
