"""Shared test helpers: a live server, SDK clients, extra registry entries, waiting
with a deadline, and fakes for the runtime's seams.

Test modules import helpers from here, never from each other.

- `wait_until(predicate, timeout=...)`: the one polling loop, always with a deadline.
- `FakeClock`: a `tunelab.clock.Clock` that moves only when told, for tests where
  time matters (heartbeats, stale workers) without sleeping through it.
- `scratch_database(server_url, name)`: a fresh PostgreSQL database on the test
  cluster, for tests that must not see (or leave) other tests' rows.
- Fine-tuning helpers: `chat_lines` (a chat-format training file), `fast_settings`
  (a worker that polls often), `wait_for` (a job reaching a status), `all_events`,
  `TERMINAL`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import openai

from tunelab.inference.handle import Delta, Finished, Generation, SamplingParams
from tunelab.inference.protocol import Target, Tokenizer
from tunelab.jobs import states
from tunelab.runtime import Runtime
from tunelab.settings import Settings

T = TypeVar("T")

TERMINAL = states.TERMINAL
S3_BUCKET = "tunelab-test"  # the bucket of the `s3` fixture (conftest.py)


def register_models(settings: Settings, entries: list[dict[str, Any]]) -> None:
    """Write extra registry entries into the data dir's models.json."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.registry_file.write_text(json.dumps({"models": entries}), encoding="utf-8")


def wait_until(
    predicate: Callable[[], T], *, timeout: float, every: float = 0.05, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout} s")
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

    return wait_until(reached, timeout=timeout, every=0.2, what=f"job {job_id} to be {statuses}")


def all_events(client: openai.OpenAI, job_id: str) -> list[Any]:
    """The job's events (up to 100), newest first."""
    return list(client.fine_tuning.jobs.list_events(job_id, limit=100))


# Debian's Chromium (apt: chromium), never a test tool's own browser download, which
# fails offline. The flags keep it from reaching out to the network on its own.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright; yields the Browser."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium and a CJK font "
            "(`make browser-deps` installs chromium and fonts-noto-cjk)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def dashboard_page(browser: Any, *, locale: str = "en-US") -> Any:
    """A fresh browser context (no stored key or language) and its page."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale=locale)
    context.set_default_timeout(30_000)
    return context.new_page()


def is_local(url: str) -> bool:
    """A request the page may make offline: to the test server, or to data in the page."""
    return url.startswith(("http://127.0.0.1:", "data:", "blob:"))


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(url + "/dashboard/")
    page.get_by_test_id("api-key").fill(key)
    page.get_by_test_id("signin-submit").click()
    page.get_by_test_id("project").wait_for()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as NAME.png in $DASHBOARD_SCREENSHOTS (`make
    screenshots` points it at docs/dashboard), else in a temp dir."""
    import tempfile

    folder = Path(
        os.environ.get("DASHBOARD_SCREENSHOTS") or Path(tempfile.gettempdir()) / "tunelab-shots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays at the top of the image
    page.screenshot(path=str(path), full_page=True)
    return path


def seed_lists(runtime: Runtime, project: str, *, n_jobs: int, n_files: int) -> None:
    """Finished jobs and file rows written straight into the database, for tests and
    benchmarks of the lists (the files have no content)."""
    from tunelab.db.tables import FileRow
    from tunelab.ids import new_id
    from tunelab.jobs.tables import Job

    start = time.time() - n_files
    with runtime.db.begin() as s:
        s.add_all(
            Job(
                id=new_id("ftjob-"),
                project=project,
                created_at=start + i,
                status="succeeded",
                model="tiny-chat",
                base_model="tiny-chat",
                training_file="file-seeded",
                hyperparameters={"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.0},
                training_method="lora",
                seed=i,
                result_files=[],
                attempts=1,
            )
            for i in range(n_jobs)
        )
        s.add_all(
            FileRow(
                id=new_id("file-"),
                project=project,
                filename=f"seeded-{i:05d}.jsonl",
                purpose="fine-tune",
                bytes=100 + i,
                sha256="0" * 64,
                status="processed",
                created_at=int(start) + i,
            )
            for i in range(n_files)
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(settings: Settings, *, log: Path, **env: str) -> Iterator[tuple[str, Any]]:
    """`tunelab serve` in its own process (and session) for these settings; yields its
    base URL and the Popen, and kills it (and its children) at the end."""

    import httpx

    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")},
        "TUNELAB_DATA_DIR": str(settings.data_dir),
        "TUNELAB_CACHE_DIR": str(settings.model_cache_dir),
        "TUNELAB_API_KEYS": settings.api_keys,
        "TUNELAB_PORT": str(port),
        **env,
    }
    proc = _spawn("serve", environ, log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"tunelab serve exited; see {log}")
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=120, every=0.2, what="tunelab serve to answer")
        yield url, proc
    finally:
        kill_hard(proc)


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[Any]:
    """`tunelab worker` in its own process (and session); killed hard at the end."""
    proc = _spawn("worker", env, log)
    try:
        yield proc
    finally:
        kill_hard(proc)


def _spawn(command: str, env: dict[str, str], log: Path) -> Any:
    """`tunelab <command>` in its own process and session, output appended to `log`."""
    import subprocess
    import sys

    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tunelab", command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def first_words(client: openai.OpenAI, model: str) -> str:
    """A fine-tune's greedy answer to the tiny chat set's first question (8 tokens)."""
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Question number 0?"}],
        max_tokens=8,
        temperature=0,
    )
    return reply.choices[0].message.content or ""


def kill_hard(proc: Any) -> None:
    """SIGKILL a server and every process it started (training runs in sessions of
    their own): a power cut, as far as the data dir can tell."""
    import signal

    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (training processes), in bytes."""
    import psutil

    parent = psutil.Process(pid)
    total = 0
    for p in [parent, *parent.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total
