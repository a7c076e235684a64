"""Acceptance: did the fine-tune help? Asked through the official SDK as an eval.

The quickstart's classification walk, end to end on the embedded SmolLM2: prepare
the tickets, fine-tune on them, then one eval with a `string_check` criterion over
the held-out tickets, run against the base model and the fine-tune. The fine-tune
passes more tickets, and each model's passed count equals what asking the model by
hand through /v1/completions (same prompt, greedy, same token budget) gives.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import run_server, sdk, wait_until
from tunelab.cli.main import cli
from tunelab.tutorial.compare import create_label_eval, model_run, wait_runs
from tunelab.tutorial.session import read_jsonl

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BASE = "smollm2-135m-instruct"


def test_eval_shows_the_fine_tune_passing_more_tickets(settings, tmp_path) -> None:
    shutil.copy(EXAMPLES / "tickets.csv", tmp_path / "tickets.csv")
    prepared = CliRunner().invoke(
        cli, ["prepare-data", "-f", str(tmp_path / "tickets.csv"), "-q", "--no-stats"]
    )
    assert prepared.exit_code == 0, prepared.output
    train, valid = (
        tmp_path / "tickets_prepared_train.jsonl",
        tmp_path / "tickets_prepared_valid.jsonl",
    )
    rows = read_jsonl(valid)

    settings.worker_poll_seconds = 0.2
    with run_server(settings) as url:
        client = sdk(url)
        train_file = client.files.create(file=train.open("rb"), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=BASE,
            training_file=train_file.id,
            seed=42,
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 3, "learning_rate_multiplier": 4}},
            },
        )
        job = wait_until(
            lambda: (
                (j := client.fine_tuning.jobs.retrieve(job.id)).status
                in ("succeeded", "failed", "cancelled")
                and j
            ),
            timeout=3600,
        )
        assert job.status == "succeeded", job.error

        ev = create_label_eval(client, "tickets")
        runs = [model_run(client, ev.id, m, rows) for m in (BASE, job.fine_tuned_model)]
        base, tuned = wait_runs(client, ev.id, runs)
        assert base.total == tuned.total == len(rows)
        assert tuned.passed > base.passed

        for run, result in zip(runs, (base, tuned), strict=True):
            by_hand = sum(
                client.completions.create(
                    model=run.model, prompt=r["prompt"], max_tokens=5, temperature=0, seed=0
                )
                .choices[0]
                .text
                == r["completion"]
                for r in rows
            )
            assert result.passed == by_hand, run.model
