"""One validator, three doors: prepare-data, upload and job validation give the same
verdict, naming the same line, for the same file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import TERMINAL, fast_settings, run_server, sdk, wait_for
from tests.tiny_models import TINY_CHAT
from tunelab.cli.main import cli

pytestmark = pytest.mark.api


def _write(path: Path, bad_line: str | None) -> Path:
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"问题 {i}"},
                    {"role": "assistant", "content": f"答案 {i}"},
                ]
            },
            ensure_ascii=False,
        )
        for i in range(12)
    ]
    if bad_line is not None:
        lines[6] = bad_line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_same_verdict_at_every_door(tiny_settings, tmp_path) -> None:
    bad = _write(
        tmp_path / "bad.jsonl",
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}',
    )
    good = _write(tmp_path / "good.jsonl", None)
    verdict = 'Line 7, message 2, field "role"'

    local = CliRunner().invoke(cli, ["prepare-data", "-f", str(bad), "-q", "--no-stats"])
    assert local.exit_code == 1 and verdict in local.output
    assert (
        CliRunner().invoke(cli, ["prepare-data", "-f", str(good), "-q", "--no-stats"]).exit_code
        == 0
    )

    with run_server(fast_settings(tiny_settings)) as url:
        client = sdk(url)
        uploaded = client.files.create(file=bad.open("rb"), purpose="fine-tune")
        assert uploaded.status == "error" and uploaded.status_details.startswith(verdict)
        job = client.fine_tuning.jobs.create(model=TINY_CHAT, training_file=uploaded.id)
        failed = wait_for(client, job.id, TERMINAL)
        assert failed.status == "failed" and failed.error.code == "invalid_training_file"
        assert verdict in failed.error.message and failed.error.param == "training_file"

        ok = client.files.create(file=good.open("rb"), purpose="fine-tune")
        assert ok.status == "processed"
        job = client.fine_tuning.jobs.create(
            model=TINY_CHAT, training_file=ok.id, hyperparameters={"n_epochs": 1, "batch_size": 4}
        )
        assert wait_for(client, job.id, TERMINAL).status == "succeeded"
