"""Shared test helpers: a live server, SDK clients, extra registry entries, waiting
with a deadline, and fakes for the runtime's seams.

Test modules import helpers from here, never from each other.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import openai

from tunelab.inference.handle import Delta, Finished, Generation, SamplingParams
from tunelab.inference.protocol import Target, Tokenizer
from tunelab.runtime import Runtime
from tunelab.settings import Settings


def register_models(settings: Settings, entries: list[dict[str, Any]]) -> None:
    """Write extra registry entries into the data dir's models.json."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.registry_file.write_text(json.dumps({"models": entries}), encoding="utf-8")


def wait_until(predicate: Callable[[], Any], *, timeout: float, every: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


@contextmanager
def run_server(config: Settings | Runtime | Any) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL.

    `config` is Settings, a Runtime (e.g. built with a fake engine), or a ready app."""
    import uvicorn

    from tunelab.api.app import create_app

    app = create_app(config) if isinstance(config, Settings | Runtime) else config
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=60)
        if not server.started:
            raise RuntimeError("test server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def sdk(url: str, api_key: str = "test-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0)


class ScriptedChatEngine:
    """A `ChatEngine` that answers from a script instead of a model.

    `answer(prompt_text)` gives the reply to a rendered prompt; it streams back in
    pieces of `piece` characters. Prompts are rendered with a real tokenizer (so
    chat templates, token counts and context checks are the real ones); `prompts`
    records every prompt seen (token ids and decoded text).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        answer: Callable[[str], str],
        *,
        context_length: int = 2048,
        piece: int = 5,
    ) -> None:
        self.tok = tokenizer
        self._answer = answer
        self._context_length = context_length
        self._piece = piece
        self.prompts: list[tuple[list[int], str]] = []

    def tokenizer(self, target: Target) -> Tokenizer:
        return self.tok

    def context_length(self, target: Target) -> int:
        return self._context_length

    def submit(self, target: Target, prompt_ids: list[int], params: SamplingParams) -> Generation:
        prompt = self.tok.decode(prompt_ids)
        self.prompts.append((list(prompt_ids), prompt))
        text = self._answer(prompt)
        gen = Generation(prompt_ids, params, stop_token_ids=frozenset())
        for i in range(params.n):
            for start in range(0, len(text), self._piece):
                gen.put(Delta(i, text[start : start + self._piece]))
            gen.put(Finished(i, "stop", max(1, len(text) // 4)))
        return gen

    def stats(self) -> dict[str, dict[str, int]]:
        return {}

    def close(self) -> None:
        return None
