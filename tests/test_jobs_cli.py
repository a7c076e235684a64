"""`tunelab jobs ...` against a real server on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import chat_lines, fast_settings, run_server
from tests.tiny_models import TINY_CHAT
from tunelab.cli.main import cli
from tunelab.settings import Settings

pytestmark = pytest.mark.api


def test_create_follow_list_results_events(
    tiny_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = tmp_path / "train.jsonl"
    train.write_bytes(chat_lines(10))
    runner = CliRunner()
    with run_server(fast_settings(tiny_settings)) as url:
        monkeypatch.setenv("TUNELAB_BASE_URL", url + "/v1")
        result = runner.invoke(
            cli,
            [
                "jobs",
                "create",
                "-t",
                str(train),
                "-m",
                TINY_CHAT,
                "--n-epochs",
                "1",
                "--suffix",
                "cli",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "Created fine-tuning job: ftjob-" in result.output
        assert "The job has successfully completed" in result.output
        model = next(
            line.split()[-1]
            for line in result.output.splitlines()
            if line.startswith("Job complete!")
        )
        assert model.startswith(f"ft:{TINY_CHAT}:default:cli:")
        assert f"tunelab chat -m {model}" in result.output
        job_id = result.output.split("Created fine-tuning job: ")[1].split()[0]

        listed = runner.invoke(cli, ["jobs", "list", "--json"])
        assert job_id in listed.output and "succeeded" in listed.output
        results = runner.invoke(cli, ["jobs", "results", job_id])
        assert (
            results.output.splitlines()[0]
            == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
        )
        assert len(results.output.splitlines()) == 11
        events = runner.invoke(cli, ["jobs", "events", job_id])
        assert events.output.splitlines()[0].endswith(f"Created fine-tuning job: {job_id}")
        cancel = runner.invoke(cli, ["jobs", "cancel", job_id])
        assert cancel.exit_code == 1 and "400" in cancel.output
        bad = runner.invoke(
            cli, ["jobs", "create", "-t", str(train), "-m", TINY_CHAT, "--n-epochs", "0"]
        )
        assert bad.exit_code == 1 and "n_epochs" in bad.output
        # A preference job: --method dpo sends the pairs file with method.dpo; --beta is
        # a DPO hyperparameter, refused without it.
        pairs = Path(__file__).resolve().parent.parent / "examples" / "concise_train.jsonl"
        dpo = runner.invoke(
            cli,
            ["jobs", "create", "-t", str(pairs), "-m", TINY_CHAT, "--method", "dpo",
             "--beta", "0.3", "--no-follow", "--json"],
        )  # fmt: skip
        assert dpo.exit_code == 0, dpo.output
        created = json.loads(dpo.stdout)  # "Uploaded ..." goes to stderr
        assert created["method"]["type"] == "dpo"
        assert created["method"]["dpo"]["hyperparameters"]["beta"] == 0.3
        runner.invoke(cli, ["jobs", "cancel", created["id"]])
        stray = runner.invoke(cli, ["jobs", "create", "-t", str(pairs), "--beta", "0.3"])
        assert stray.exit_code == 2 and "--method dpo" in stray.output
