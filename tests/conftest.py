"""Shared fixtures: isolated settings, a real server over real HTTP, SDK clients.

Every test gets its own data dir (fresh SQLite database and file store); converted
models are cached once per checkout under .tunelab/test-cache so the GGUF
conversion runs once, not per test.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.tiny_models import build_tiny_chat_model, tiny_registry_entry
from tunelab.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = ROOT / ".tunelab" / "test-cache"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TUNELAB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def model_cache() -> Path:
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    return MODEL_CACHE


@pytest.fixture
def settings(tmp_path: Path, model_cache: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", cache_dir=model_cache)


@pytest.fixture(scope="session")
def tiny_chat_dir(model_cache: Path) -> Path:
    return build_tiny_chat_model(model_cache / "tiny-chat", model_cache)


def register_models(settings: Settings, entries: list[dict[str, Any]]) -> None:
    """Write extra registry entries into the data dir's models.json."""
    import json

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.registry_file.write_text(json.dumps({"models": entries}), encoding="utf-8")


@pytest.fixture
def tiny_settings(settings: Settings, tiny_chat_dir: Path) -> Settings:
    """Settings whose registry also knows the tiny in-code chat model as 'tiny-chat'."""
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    return settings


@contextmanager
def run_server(settings: Settings, app: Any = None) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    from tunelab.api.app import create_app

    app = app or create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def make_server() -> Callable[..., Any]:
    return run_server


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with run_server(settings) as url:
        yield url


def sdk(url: str, api_key: str = "test-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0)


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return sdk(server)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests import postgres

    if not postgres.available():
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed on this machine")
    with postgres.cluster() as url:
        yield url
