"""The files / models / embed commands against a running server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunelab.cli.main import cli

pytestmark = pytest.mark.unit


@pytest.fixture
def run(server, monkeypatch):
    monkeypatch.setenv("TUNELAB_BASE_URL", server + "/v1")

    def invoke(*args: str):
        result = CliRunner().invoke(cli, list(args))
        return result

    return invoke


def test_files_commands(run, tmp_path) -> None:
    src = tmp_path / "手册.txt"
    src.write_text("第一章 安装\nChapter 1\n", encoding="utf-8")
    up = run("files", "upload", str(src), "--purpose", "assistants", "--json")
    assert up.exit_code == 0, up.output
    fid = json.loads(up.output)["id"]
    listed = run("files", "list", "--json")
    assert [f["id"] for f in json.loads(listed.output)] == [fid]
    out = tmp_path / "back.txt"
    assert run("files", "download", fid, "-o", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8") == src.read_text(encoding="utf-8")
    assert run("files", "rm", fid).exit_code == 0
    missing = run("files", "show", fid)
    assert missing.exit_code != 0 and "404" in missing.output and "Traceback" not in missing.output


def test_bad_fine_tune_file_exits_nonzero(run, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n', encoding="utf-8")
    result = run("files", "upload", str(bad))
    assert result.exit_code == 1 and "Line 2" in result.output


@pytest.mark.realmodel
def test_models_and_embed(run) -> None:
    models = run("models", "list", "--json")
    assert "smollm2-135m-instruct" in {m["id"] for m in json.loads(models.output)}
    result = run("embed", "reset the router", "restore router defaults", "bake bread")
    assert result.exit_code == 0 and "cosine similarity" in result.output


def test_unreachable_server_is_one_clean_line(monkeypatch) -> None:
    monkeypatch.setenv("TUNELAB_BASE_URL", "http://127.0.0.1:9/v1")
    result = CliRunner().invoke(cli, ["files", "list"])
    assert (
        result.exit_code != 0
        and "tunelab serve" in result.output
        and "Traceback" not in result.output
    )
