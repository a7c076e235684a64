"""API keys and project isolation."""

from __future__ import annotations

import openai
import pytest
from click.testing import CliRunner

from tests.support import run_server, sdk
from tunelab.cli.main import cli

pytestmark = pytest.mark.api


@pytest.fixture
def keyed_server(settings):
    settings.api_keys = "key-alpha:alpha, key-beta:beta, key-bare"
    with run_server(settings) as url:
        yield url


def test_missing_and_wrong_keys_are_401(keyed_server: str) -> None:
    with pytest.raises(openai.AuthenticationError) as e:
        sdk(keyed_server, "wrong-key").models.list()
    assert e.value.body["code"] == "invalid_api_key"
    assert "wrong-key" not in e.value.message  # keys are never echoed whole
    import httpx

    r = httpx.get(keyed_server + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(keyed_server + "/health").status_code == 200  # health needs no key


def test_projects_are_isolated(keyed_server: str) -> None:
    alpha, beta = sdk(keyed_server, "key-alpha"), sdk(keyed_server, "key-beta")
    f = alpha.files.create(file=("secret.txt", b"alpha only"), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        beta.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        beta.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        beta.files.delete(f.id)
    assert [x.id for x in beta.files.list()] == []
    assert [x.id for x in alpha.files.list()] == [f.id]
    # A bare key belongs to the "default" project, which is a third project.
    assert [x.id for x in sdk(keyed_server, "key-bare").files.list()] == []
    # Another project's id as a cursor is unknown, not a way to probe.
    with pytest.raises(openai.BadRequestError):
        beta.files.list(after=f.id)


def test_stored_keys_are_hashed_and_work(settings, monkeypatch) -> None:
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(cli, ["keys", "create", "--project", "gamma"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[0]
    assert key.startswith("tl-")
    assert key.encode() not in (settings.data_dir / "tunelab.db").read_bytes()
    listing = CliRunner().invoke(cli, ["keys", "list"])
    assert "gamma" in listing.output and key not in listing.output
    with run_server(settings) as url:
        assert sdk(url, key).files.list().data == []
        with pytest.raises(openai.AuthenticationError):
            sdk(url, "tl-not-a-key").files.list()


def test_serve_refuses_public_bind_without_keys(settings, monkeypatch) -> None:
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code != 0 and "without API keys" in result.output
