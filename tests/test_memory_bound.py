"""Hostile requests keep the server's memory bounded (issue 11).

A real `tunelab serve` process with the default limits, the tiny in-code chat model
and the embedded MiniLM. After one ordinary chat and embeddings request (models
loaded, caches warm), the biggest requests the limits allow and the oversized ones
they refuse (with and without a key) are sent, several at once; the server's RSS,
sampled all along, must stay within RSS_BOUND of what it was when warm. Before the
limits, a 200 MB JSON body without a key alone added ~600 MB, and n=128 on one
prompt 2.4 GB (README, "Limits").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import register_models, rss_bytes, serve_process
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.limits import MAX_EMBEDDING_INPUTS, MAX_N, MAX_PROMPTS
from tunelab.settings import Settings

pytestmark = pytest.mark.api

MiB = 1024 * 1024
# The documented bound (README, "Limits"): growth over the warm server under hostile load.
RSS_BOUND = 512 * MiB
A = {"Authorization": "Bearer key-a"}
EMBEDDING = "text-embedding-3-small"


def stream(total: int, piece: bytes = b"x" * 65536) -> Iterator[bytes]:
    """`total` bytes, made as they are sent (the test holds none of them)."""
    for _ in range(total // len(piece)):
        yield piece


def test_hostile_requests_keep_server_memory_bounded(
    settings: Settings, tiny_chat_dir: Path, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"api_keys": "key-a:a"})
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with serve_process(settings, log=tmp_path / "serve.log") as (url, proc):
        http = httpx.Client(base_url=url + "/v1", headers=A, timeout=300)
        hi = [{"role": "user", "content": "hi"}]
        chat = {"model": TINY_CHAT, "messages": hi, "max_tokens": 4}
        assert http.post("/chat/completions", json=chat).status_code == 200
        emb = {"model": EMBEDDING, "input": "hi"}
        assert http.post("/embeddings", json=emb).status_code == 200
        warm = rss_bytes(proc.pid)
        peak = [warm]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], rss_bytes(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        long_prompt = "word " * 400  # most of the tiny model's 512-token context
        big_chat = {"role": "user", "content": long_prompt}
        json_ct = {"content-type": "application/json"}
        form_ct = {"content-type": "multipart/form-data; boundary=x"}
        hostile: list[tuple[str, dict[str, Any], int]] = [
            # the biggest generation: n choices of a prompt that fills most of the context
            (
                "/chat/completions",
                {
                    "json": {
                        "model": TINY_CHAT,
                        "messages": [big_chat],
                        "n": MAX_N,
                        "max_tokens": 64,
                    }
                },
                200,
            ),
            (
                "/completions",
                {
                    "json": {
                        "model": TINY_CHAT,
                        "prompt": [long_prompt] * MAX_PROMPTS,
                        "n": 2,
                        "max_tokens": 16,
                    }
                },
                200,
            ),
            # the biggest embeddings batch
            (
                "/embeddings",
                {"json": {"model": EMBEDDING, "input": ["a few words"] * MAX_EMBEDDING_INPUTS}},
                200,
            ),
            # bodies far over the limits: without a key, with a wrong one, with one
            (
                "/embeddings",
                {"content": stream(200 * MiB), "headers": {"Authorization": "", **json_ct}},
                401,
            ),
            (
                "/files",
                {
                    "content": stream(400 * MiB),
                    "headers": {"Authorization": "Bearer nope", **form_ct},
                },
                401,
            ),
            ("/embeddings", {"content": stream(200 * MiB), "headers": json_ct}, 413),
            ("/chat/completions", {"content": b"[" * (15 * MiB), "headers": json_ct}, 400),
        ]

        def send(item: tuple[str, dict[str, Any], int]) -> tuple[str, int, int]:
            path, kwargs, want = item
            try:
                got = http.post(path, **kwargs).status_code
            except httpx.TransportError:  # the server closed a body it refused mid-send
                got = want if want >= 400 else -1
            return path, got, want

        try:
            with ThreadPoolExecutor(len(hostile)) as pool:
                results = list(pool.map(send, hostile))
        finally:
            done.set()
            sampler.join(5)
        assert [(p, got) for p, got, _ in results] == [(p, want) for p, _, want in results]
        grown = peak[0] - warm
        assert grown < RSS_BOUND, f"RSS grew by {grown / MiB:.0f} MiB (bound {RSS_BOUND / MiB:.0f})"
        assert http.get("/models").status_code == 200
