"""The docs' code works as written: every ```python block of README.md and
README.zh-CN.md, and of docs/*.md, runs against a live server (its address swapped
for the test server's); and `tunelab serve` starts.

Identical blocks (the English and Chinese READMEs share their code) run once.
Blocks in docs/*.md that start a full fine-tuning run are the same flows as
tests/test_training_persona.py and tests/test_tutorial_*.py, which run them; the
READMEs' own fine-tuning block is small and does run here.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
READMES = [p for p in (ROOT / "README.md", ROOT / "README.zh-CN.md") if p.exists()]
DOCS = sorted((ROOT / "docs").glob("*.md"))
DEFAULT_URL = "http://127.0.0.1:8000/v1"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _collect() -> list[tuple[str, str]]:
    seen: set[str] = set()
    out = []
    for path in READMES + DOCS:
        for i, code in enumerate(python_blocks(path)):
            trains = "fine_tuning.jobs.create" in code
            if code in seen or (trains and path in DOCS):
                continue
            seen.add(code)
            out.append((f"{path.name}-{i}", code))
    return out


BLOCKS = _collect()


@pytest.mark.realmodel
@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[n for n, _ in BLOCKS])
def test_python_blocks_run(name: str, code: str, server: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # dont_inherit: the block runs as a user's script would, without this module's
    # `from __future__ import annotations` (which pydantic models in a block can't resolve).
    source = code.replace(DEFAULT_URL, server + "/v1")
    exec(compile(source, name, "exec", dont_inherit=True), {"__name__": "__main__"})


def tunelab_lines(path: Path) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
    return [
        line.strip()
        for b in blocks
        for line in b.splitlines()
        if line.strip().startswith("tunelab ")
    ]


# In document order: `tunelab keys create` comes last, and from then on the server
# (rightly) wants a key.
COMMANDS = list(dict.fromkeys(line for p in READMES for line in tunelab_lines(p)))


@pytest.mark.realmodel
def test_readme_commands_run(server: str, settings, monkeypatch) -> None:
    """Every `tunelab ...` line of the READMEs' shell blocks, against a live server."""
    import shlex

    from click.testing import CliRunner

    from tunelab.cli.main import cli

    monkeypatch.setenv("TUNELAB_BASE_URL", server + "/v1")
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(settings.data_dir))
    assert COMMANDS
    for line in COMMANDS:
        result = CliRunner().invoke(cli, shlex.split(line, comments=True)[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"


def test_readmes_are_covered() -> None:
    assert READMES and all(python_blocks(p) for p in READMES)


def test_serve_command_starts_and_answers(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")}
    env["TUNELAB_DATA_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        assert r.json()["status"] == "ok"
        assert r.headers["x-request-id"].startswith("req_")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
