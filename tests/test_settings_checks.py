"""Settings that would make the server refuse every request (of a kind) stop it at
startup, with an error naming the TUNELAB_* variable (issue 11, follow-up)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from tunelab import limits, settings
from tunelab.cli.main import cli
from tunelab.settings import Settings

pytestmark = pytest.mark.unit

BAD: list[tuple[str, object]] = [
    ("max_queued_requests", limits.MAX_PROMPTS - 1),  # a full completions request: 503 forever
    ("max_queued_requests", 0),
    ("max_batch_size", 0),
    ("max_batch_size", -1),
    ("max_request_bytes", 0),
    ("max_request_bytes", 100),
    ("max_upload_bytes", -5),
    ("embed_max_batch", 0),
    ("adapter_cache_size", 0),
    ("full_model_memory_mb", 0),
    ("worker_poll_seconds", 0),
    ("worker_stale_seconds", -1),
    ("embed_batch_window_ms", float("nan")),
    ("port", 0),
]


@pytest.mark.parametrize(("field", "value"), BAD)
def test_settings_that_refuse_every_request_are_a_startup_error(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=f"TUNELAB_{field.upper()}"):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_the_edges_are_accepted() -> None:
    s = Settings(
        max_queued_requests=limits.MAX_PROMPTS,
        max_batch_size=1,  # a request with n choices still runs alone (worker.py)
        max_request_bytes=settings.MIN_BODY_BYTES,
        embed_batch_window_ms=0,
    )
    assert s.max_queued_requests == limits.MAX_PROMPTS


def test_the_queue_minimum_is_the_prompt_limit() -> None:
    # settings sits below limits in the layers, so it keeps its own copy of the number.
    assert settings.MAX_PROMPTS_PER_REQUEST == limits.MAX_PROMPTS


def test_serve_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_MAX_QUEUED_REQUESTS", "3")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "TUNELAB_MAX_QUEUED_REQUESTS" in result.output and "at least 16" in result.output


def test_an_unknown_or_removed_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_LLAMACPP_INSTANCES", "2")  # removed: llama.cpp batches now
    monkeypatch.setenv("TUNELAB_MAX_BATCH_SZE", "4")  # misspelt
    with pytest.raises(ValidationError) as e:
        Settings()
    assert "TUNELAB_LLAMACPP_INSTANCES" in str(e.value)
    assert "TUNELAB_MAX_BATCH_SZE (did you mean TUNELAB_MAX_BATCH_SIZE?)" in str(e.value)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "TUNELAB_MAX_BATCH_SZE" in result.output and "unknown setting" in result.output


def test_the_variables_that_are_not_settings_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in settings.NOT_SETTINGS:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("TUNELAB_MAX_BATCH_SIZE", "4")
    assert Settings().max_batch_size == 4
