"""`tunelab quickstart --fast`: the steps that neither train nor generate, against a
real server, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tunelab.cli.main import cli

pytestmark = pytest.mark.unit


@pytest.mark.realmodel
def test_quickstart_fast_walks_the_cheap_steps(server: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["quickstart", "--fast", "--base-url", server + "/v1", "--workdir", str(tmp_path)]
    )
    out = result.output
    assert result.exit_code == 0, out
    for step in ("Step 1", "Step 2", "Step 5", "Step 6", "Step 8"):
        assert step in out
    assert "tunelab prepare-data -f examples/support_qa_gbk.csv -q" in out  # the CLI command
    assert "client.files.create(" in out  # and its SDK equivalent
    assert "status=processed" in out
    assert (tmp_path / "work" / "support_qa_gbk_prepared.jsonl").exists()
    assert "3 files indexed" in out
    assert "embeddings + logistic regression: accuracy" in out
    assert "vs_" in out.split("What the walk created")[1]  # resources listed at the end


def test_quickstart_refuses_an_unknown_step() -> None:
    result = CliRunner().invoke(cli, ["quickstart", "--step", "nope"])
    assert result.exit_code == 2
    assert "unknown step 'nope'" in result.output
