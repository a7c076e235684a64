"""llama.cpp copies of one GGUF model, each owned by a thread, and their request queue.

The engine (tunelab.inference.llamacpp) decides which requests come here; this
module runs them through gpt4all 2.8.2's C API (`llmodel_prompt`, pinned with the
wheel): tunelab's prompt text with special tokens parsed and no template, every
prompt token checked against tunelab's ids, each sampled token handed back to a
callback that detokenizes it, cuts stop strings, enforces `max_tokens` and stops
llama.cpp (by returning False) when the choice is over or the client has gone.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import ModelUnavailable, TunelabError, queue_full
from tunelab.inference.handle import Delta, Failed, Finished, Generation
from tunelab.inference.protocol import Tokenizer
from tunelab.inference.textstream import IncrementalDetokenizer, StopMatcher
from tunelab.models.registry import ModelSpec

log = logging.getLogger(__name__)

# No prompt template: tunelab's prompt already is the templated conversation. With
# two placeholders gpt4all also appends nothing after the reply.
NO_TEMPLATE = b"%1%2"

# Submits a request to the transformers engine instead.
Fallback = Callable[[], Generation]


def load_copy(base: ModelSpec, path: Path, n_ctx: int, threads: int) -> Any:
    """One llama.cpp model + context (a gpt4all LLModel) on the CPU."""
    try:
        from gpt4all import _pyllmodel
    except ImportError as e:  # a dependency of tunelab; a broken install says so
        raise ModelUnavailable(
            f"'{base.id}' runs on llama.cpp, which comes with the gpt4all package: "
            f"install gpt4all==2.8.2 ({e})."
        ) from e
    # One more position than the window: gpt4all stops a reply one token before its
    # context is full, and a request may use the whole window.
    # gpt4all's CPU build is its Kompute one used without a GPU (no layers offloaded),
    # except on macOS, which has a "cpu" build.
    backend = "cpu" if sys.platform == "darwin" else "kompute"
    model = _pyllmodel.LLModel(str(path), n_ctx + 1, 0, backend)
    if not model.load_model():
        model.close()
        raise ModelUnavailable(
            f"llama.cpp (gpt4all 2.8.2) could not load {path} for '{base.id}': the file's "
            "architecture or tokenizer may be newer than that build. Remove "
            '"engine": "llama.cpp" from its registry entry to serve it with transformers.'
        )
    model.set_thread_count(threads)
    return model


@dataclass
class _Choice:
    """One choice being generated: text deltas, stop strings, limits, and how it ended."""

    gen: Generation
    index: int
    detok: IncrementalDetokenizer
    stopper: StopMatcher
    n: int = 0
    reason: str | None = None

    def token(self, token_id: int) -> bool:
        """A sampled token; False once the choice is over (llama.cpp then stops)."""
        self.n += 1
        if token_id in self.gen.stop_token_ids:
            self.finish(self.detok.flush(), "stop")
            return False
        text, hit = self.stopper.feed(self.detok.push(token_id))
        if hit:
            self.emit(text)
            self.finish("", "stop")
        elif self.n >= self.gen.params.max_tokens:
            self.finish(text + self.detok.flush(), "length")
        else:
            self.emit(text)
            if self.gen.choice_stopped(self.index):
                self.finish("", "stop")
        return self.reason is None and not self.gen.cancelled

    def end_of_turn(self, *, context_full: bool) -> None:
        """llama.cpp ended the reply itself: its end token (counted), or a full window."""
        if not context_full:
            self.n += 1
        self.finish(self.detok.flush(), "length" if context_full else "stop")

    def emit(self, text: str) -> None:
        if text:
            self.gen.put(Delta(self.index, text))

    def finish(self, tail: str, reason: str) -> None:
        text, hit = self.stopper.feed(tail)
        if not hit:
            text += self.stopper.flush()
        self.emit(text)
        self.reason = "stop" if hit else reason
        self.gen.put(Finished(self.index, self.reason, self.n))


class _PromptMismatch(Exception):
    """llama.cpp read other prompt tokens than tunelab counted."""


class LlamaCppModel:
    """One GGUF model on llama.cpp: its loaded copies, each owned by one thread, and
    the queue of generations waiting for a free copy."""

    def __init__(
        self,
        name: str,
        copies: list[Any],
        tokenizer: Tokenizer,
        stop_token_ids: frozenset[int],
        *,
        max_queued: int,
    ) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids
        self.max_queued = max_queued
        self.stats: Counter[str] = Counter()
        self._pending: deque[tuple[Generation, Fallback]] = deque()
        self._running = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._serve, args=(copy,), name=f"llamacpp-{name}-{i}")
            for i, copy in enumerate(copies)
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def submit(self, gen: Generation, fallback: Fallback) -> None:
        """Queue `gen`; `fallback()` submits it to transformers instead (see _generate)."""
        with self._cond:
            if len(self._pending) >= self.max_queued:
                raise queue_full(self.name, len(self._pending))
            self._pending.append((gen, fallback))
            self.stats["requests"] += 1  # holding the lock already
            self._cond.notify()

    def count(self, key: str, n: int = 1) -> None:
        with self._cond:
            self.stats[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._cond:
            return {**self.stats, "waiting": len(self._pending), "running": self._running}

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    # -- the threads that own the copies ---------------------------------------------

    def _serve(self, copy: Any) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._pending:
                    self._cond.wait()
                if self._stopping:
                    break
                gen, fallback = self._pending.popleft()
                self._running += 1
            try:
                self._generate(copy, gen, fallback)
            except Exception as e:  # reported to the request, never lost on a thread
                log.exception("llama.cpp generation failed on %s", self.name)
                self.count("failed")
                gen.put(Failed(e))
            finally:
                with self._cond:
                    self._running -= 1
        with self._cond:
            waiting, self._pending = list(self._pending), deque()
        for gen, _ in waiting:
            gen.put(Failed(RuntimeError("the server is shutting down")))
        copy.close()

    def _generate(self, copy: Any, gen: Generation, fallback: Fallback) -> None:
        if gen.cancelled:
            self.count("cancelled")
            return
        text = self.tokenizer.decode(
            gen.prompt_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        ).encode()
        for index in range(gen.params.n):
            choice = _Choice(
                gen,
                index,
                IncrementalDetokenizer(self.tokenizer),
                StopMatcher(list(gen.params.stop)),
            )
            try:
                context_full = self._run(copy, text, choice)
            except _PromptMismatch:
                # Only the first choice can get here: nothing has been sent yet.
                self.count("prompt_fallbacks")
                log.warning("%s: llama.cpp tokenized a prompt differently; ran it on "
                            "transformers", self.name)  # fmt: skip
                _relay(fallback(), gen)
                return
            if choice.reason is None:
                if gen.cancelled or self._stopping:
                    self.count("cancelled")
                    return
                choice.end_of_turn(context_full=context_full)
            self.count("generated_tokens", choice.n)
            self.count(f"finished_{choice.reason}")

    def _run(self, copy: Any, text: bytes, choice: _Choice) -> bool:
        """One choice on llama.cpp; True when it ended on a full context window."""
        from gpt4all import _pyllmodel as g

        gen, ids = choice.gen, choice.gen.prompt_ids
        read = 0  # prompt tokens llama.cpp has decoded (and matched) so far
        errors: list[BaseException] = []

        def on_prompt(token_id: int) -> bool:
            nonlocal read
            if read >= len(ids) or ids[read] != token_id:
                errors.append(_PromptMismatch())
                return False
            read += 1
            return not (gen.cancelled or self._stopping)

        def on_token(token_id: int, piece: bytes | None) -> bool:
            try:
                if token_id < 0:  # gpt4all reports its errors this way
                    message = (piece or b"").decode(errors="replace")
                    errors.append(TunelabError(f"llama.cpp failed: {message}"))
                    return False
                if read != len(ids):  # it read a shorter prompt: nothing may be sent
                    errors.append(_PromptMismatch())
                    return False
                return choice.token(token_id) and not self._stopping
            except Exception as e:  # an exception must not cross the C boundary
                errors.append(e)
                return False

        p = gen.params
        ctx = g.LLModelPromptContext(
            n_past=0,
            n_predict=p.max_tokens,
            top_k=0,  # all tokens: OpenAI has no top_k
            top_p=p.top_p,
            min_p=0.0,
            temp=p.temperature,
            n_batch=128,  # gpt4all's largest prompt batch
            repeat_penalty=1.0,  # off: penalties route to transformers
            repeat_last_n=0,
            context_erase=0.0,
        )
        g.llmodel.llmodel_prompt(
            copy.model,
            ctypes.c_char_p(text),
            ctypes.c_char_p(NO_TEMPLATE),
            g.PromptCallback(on_prompt),
            g.ResponseCallback(on_token),
            False,  # never shift the context: a request fits its window or is refused
            ctypes.byref(ctx),
            True,  # parse special tokens: <|im_start|> is one token, as tunelab counted
            ctypes.c_char_p(),
        )
        self.count("prefill_tokens", read)
        if errors:
            raise errors[0]
        if read != len(ids) and not (gen.cancelled or self._stopping):
            raise _PromptMismatch
        return len(ids) + choice.n + 1 >= int(ctx.n_ctx)


def _relay(source: Generation, gen: Generation) -> None:
    """Copy another engine's events for the same request into `gen`, passing on a cancel."""
    for event in source.events():
        if gen.cancelled:
            source.cancel()  # a cancelled generation sends nothing more: stop reading
            return
        gen.put(event)
