"""`tunelab chat` and `tunelab complete` against a running server (tiny model)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.support import register_models, run_server
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.cli.main import cli
from tunelab.settings import Settings

pytestmark = pytest.mark.api


@pytest.fixture
def run(
    settings: Settings, tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Result]]:
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as url:
        monkeypatch.setenv("TUNELAB_BASE_URL", url + "/v1")
        yield lambda *args, input=None: CliRunner().invoke(cli, list(args), input=input)


def test_chat_one_shot_interactive_and_complete(run: Callable[..., Result]) -> None:
    one = run(
        "chat",
        "-m",
        TINY_CHAT,
        "-s",
        "Be brief.",
        "--max-tokens",
        "5",
        "--temperature",
        "0",
        "Hello",
    )
    assert one.exit_code == 0, one.output
    assert one.output.strip()

    # two turns, then an empty line ends the session
    session = run("chat", "-m", TINY_CHAT, "--max-tokens", "3", input="Hello\nAgain\n\n")
    assert session.exit_code == 0, session.output
    assert session.output.count("you> ") == 3

    done = run(
        "complete", "-m", TINY_CHAT, "Once upon a time", "--max-tokens", "4", "--stop", "\\n"
    )
    assert done.exit_code == 0, done.output

    missing = run("chat", "-m", "no-such-model", "Hi")
    assert missing.exit_code == 1 and "404" in missing.output and "Traceback" not in missing.output
    bad = run("complete", "-m", TINY_CHAT, "Hi", "--temperature", "5")
    assert bad.exit_code == 1 and "temperature" in bad.output
