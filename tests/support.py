"""Helpers shared by test modules: test modules import from here, never from each other.

- `wait_until(predicate, timeout)`: the one polling loop, always with a deadline.
- `FakeClock`: a `tunelab.clock.Clock` that moves only when told, for tests where
  time matters (heartbeats, stale workers) without sleeping through it.
- `scratch_database(server_url, name)`: a fresh PostgreSQL database on the test
  cluster, for tests that must not see (or leave) other tests' rows.
- Fine-tuning helpers: `chat_lines` (a chat-format training file), `fast_settings`
  (a worker that polls often), `wait_for` (a job reaching a status), `TERMINAL`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import openai

from tunelab.jobs import states
from tunelab.settings import Settings

T = TypeVar("T")

TERMINAL = states.TERMINAL


def wait_until(
    predicate: Callable[[], T], timeout: float = 60, *, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy (returned); AssertionError
    naming `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(interval)


class FakeClock:
    """Time that moves only with `advance` (and `wait`, which advances by what it waits)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._mono = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        if not stop.is_set():
            self.advance(seconds)
        return stop.is_set()


def scratch_database(server_url: str, name: str) -> str:
    """Create database `name` on the server of `server_url`; its URL."""
    from sqlalchemy import create_engine, text

    safe = "".join(c if c.isalnum() else "_" for c in name.lower())
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{safe}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + safe


def chat_lines(n: int, *, greeting: str = "Ahoy!") -> bytes:
    """A chat-format JSONL training file of n examples."""
    lines = []
    for i in range(n):
        messages = [
            {"role": "user", "content": f"Question number {i}?"},
            {"role": "assistant", "content": f"{greeting} Answer {i % 3}."},
        ]
        lines.append(json.dumps({"messages": messages}))
    return ("\n".join(lines) + "\n").encode()


def fast_settings(settings: Settings, **overrides: Any) -> Settings:
    """`settings` with a worker that polls every 0.1 s."""
    return settings.model_copy(update={"worker_poll_seconds": 0.1, **overrides})


def wait_for(
    client: openai.OpenAI, job_id: str, statuses: tuple[str, ...], timeout: float = 120
) -> Any:
    """The job, once its status is one of `statuses` (through the API)."""

    def reached() -> Any:
        job = client.fine_tuning.jobs.retrieve(job_id)
        return job if job.status in statuses else None

    return wait_until(reached, timeout, interval=0.2, what=f"job {job_id} to be {statuses}")


def all_events(client: openai.OpenAI, job_id: str) -> list[Any]:
    """The job's events (up to 100), newest first."""
    return list(client.fine_tuning.jobs.list_events(job_id, limit=100))
