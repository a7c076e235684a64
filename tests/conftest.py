"""Shared fixtures: isolated settings, a real server over real HTTP, SDK clients.

Every test gets its own data dir (fresh SQLite database and file store); converted
models are cached once per checkout under .tunelab/test-cache so the GGUF
conversion runs once, not per test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import (
    S3_BUCKET,
    chromium,
    dashboard_page,
    free_port,
    is_local,
    register_models,
    run_server,
    sdk,
)
from tests.tiny_models import build_tiny_chat_model, tiny_registry_entry
from tunelab.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = ROOT / ".tunelab" / "test-cache"
TIERS = ("unit", "api", "realmodel", "slow", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to a tier (a module's `pytestmark` or its own mark), so
    `-m` selects what it says; a test without one is a collection error."""
    untiered = [i.nodeid for i in items if not any(i.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError(
            f"tests without a tier marker ({', '.join(TIERS)}): " + ", ".join(untiered[:10])
        )


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


@pytest.fixture
def tiny_settings(settings: Settings, tiny_chat_dir: Path) -> Settings:
    """Settings whose registry also knows the tiny in-code chat model as 'tiny-chat'."""
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    return settings


@pytest.fixture
def make_server() -> Callable[..., Any]:
    return run_server


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with run_server(settings) as url:
        yield url


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


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's S3 server over real HTTP on a loopback port; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A boto3 client on the moto server with an empty bucket S3_BUCKET (removed after)."""
    import boto3

    # moto accepts any credentials; boto3 must find some (its usual chain).
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=S3_BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=S3_BUCKET).get("Contents", []):
        client.delete_object(Bucket=S3_BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=S3_BUCKET)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (the dashboard's tests)."""
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A dashboard page that fails its test on a script error or a request to
    another host (the dashboard works offline)."""
    page = dashboard_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    elsewhere: list[str] = []
    page.on("request", lambda r: None if is_local(r.url) else elsewhere.append(r.url))
    yield page
    page.context.close()
    assert not errors, f"script errors in the page: {errors}"
    assert not elsewhere, f"requests to other hosts: {elsewhere}"
