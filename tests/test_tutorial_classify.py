"""`tunelab classify`: embeddings from a real server (MiniLM) + logistic regression."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tunelab.cli.main import cli

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.realmodel
def test_classify_tickets_end_to_end(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_BASE_URL", server + "/v1")
    result = CliRunner().invoke(cli, ["classify", "--train", str(EXAMPLES / "tickets.csv")])
    assert result.exit_code == 0, result.output
    assert "4 classes: account, billing, shipping, technical" in result.output
    accuracy = float(result.output.split("accuracy")[1].split()[0])
    assert accuracy > 0.6  # four balanced classes: chance is 0.25
    assert "(on 35 test examples)" in result.output


def test_classify_explains_a_file_without_labels(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELAB_BASE_URL", server + "/v1")
    bad = tmp_path / "texts.csv"
    bad.write_text("text,label\nhello,greeting\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["classify", "--train", str(bad)])
    assert result.exit_code == 1
    assert "no rows with a non-empty `prompt` and `completion`" in result.output
    assert "Traceback" not in result.output
