"""Fine-tuning jobs through the official openai SDK against a real server, on the tiny model.

The embedded worker trains for real (a 2-layer Llama built in code), so these tests
cover the whole path: upload -> validate -> queue -> train -> checkpoints -> model.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.support import (
    TERMINAL,
    all_events,
    chat_lines,
    fast_settings,
    run_server,
    sdk,
    wait_for,
    wait_until,
)
from tests.tiny_models import TINY_CHAT
from tunelab.settings import Settings

pytestmark = pytest.mark.api


def upload(
    client: openai.OpenAI, data: bytes, name: str = "train.jsonl", purpose: str = "fine-tune"
) -> str:
    return client.files.create(file=(name, data), purpose=purpose).id  # type: ignore[arg-type]


@pytest.fixture
def jobs_server(tiny_settings: Settings) -> Any:
    with run_server(fast_settings(tiny_settings)) as url:
        yield url


@pytest.fixture
def client(jobs_server: str) -> openai.OpenAI:
    return sdk(jobs_server)


def create(client: openai.OpenAI, n: int = 12, **kwargs: Any) -> Any:
    file_id = upload(client, chat_lines(n))
    params: dict[str, Any] = {"model": TINY_CHAT, "training_file": file_id}
    params.update(kwargs)
    return client.fine_tuning.jobs.create(**params)


def test_job_trains_to_succeeded_with_checkpoints_results_and_model(client: openai.OpenAI) -> None:
    valid = upload(client, chat_lines(4), "valid.jsonl")
    job = create(
        client,
        validation_file=valid,
        suffix="My First Tune!",
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 20}
            },
        },
        metadata={"team": "a"},
    )
    assert job.status == "validating_files"
    assert job.hyperparameters.n_epochs == 3
    done = wait_for(client, job.id, TERMINAL)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith(f"ft:{TINY_CHAT}:default:my-first-tune:")
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.finished_at is not None and done.estimated_finish is None

    events = all_events(client, job.id)
    messages = [e.message for e in reversed(events)]
    assert messages[0] == f"Created fine-tuning job: {job.id}"
    assert f"Validating training file: {job.training_file} and validation file: {valid}" in messages
    assert "Files validated, moving job to queued state" in messages
    assert "Fine-tuning job started" in messages
    assert messages[-2] == f"New fine-tuned model created: {done.fine_tuned_model}"
    assert messages[-1] == "The job has successfully completed"
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 9  # 12 examples / batch 4 * 3 epochs
    assert any("validation loss" in e.message for e in metrics)
    assert "full_valid_loss" in metrics[0].data  # newest first: the last step

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [9, 6, 3]
    assert checkpoints[0].fine_tuned_model_checkpoint == done.fine_tuned_model
    assert checkpoints[1].fine_tuned_model_checkpoint.endswith(":ckpt-step-6")
    model_ids = {m.id for m in client.models.list()}
    assert {c.fine_tuned_model_checkpoint for c in checkpoints} <= model_ids

    csv = client.files.content(done.result_files[0]).text.splitlines()
    assert csv[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(csv) == 10
    losses = [float(r.split(",")[1]) for r in csv[1:]]
    assert losses[-1] < losses[0]

    page = client.fine_tuning.jobs.list(metadata={"team": "a"})
    assert [j.id for j in page.data] == [job.id]
    assert client.fine_tuning.jobs.list(metadata={"team": "b"}).data == []


@pytest.mark.parametrize(
    ("hyperparameters", "param"),
    [
        ({"n_epochs": 0}, "n_epochs"),
        ({"n_epochs": 51}, "n_epochs"),
        ({"n_epochs": "many"}, "n_epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 257}, "batch_size"),
        ({"learning_rate_multiplier": 0}, "learning_rate_multiplier"),
        ({"learning_rate_multiplier": -1.5}, "learning_rate_multiplier"),
        ({"method": "qlora"}, "method"),
    ],
)
def test_bad_hyperparameters_are_400_naming_the_param(
    client: openai.OpenAI, hyperparameters: dict[str, Any], param: str
) -> None:
    file_id = upload(client, chat_lines(10))
    with pytest.raises(openai.BadRequestError) as e:
        client.fine_tuning.jobs.create(
            model=TINY_CHAT, training_file=file_id, hyperparameters=hyperparameters
        )  # type: ignore[arg-type]
    assert e.value.body["param"] == f"hyperparameters.{param}"  # type: ignore[index]
    assert client.fine_tuning.jobs.list().data == []


def test_bad_create_requests_name_their_param(client: openai.OpenAI) -> None:
    good = upload(client, chat_lines(10))
    assistants = upload(client, b"hello", "notes.txt", purpose="assistants")
    cases = [
        ({"model": "no-such-model", "training_file": good}, "model"),
        ({"model": "all-minilm-l6-v2", "training_file": good}, "model"),
        ({"model": TINY_CHAT, "training_file": "file-nope"}, "training_file"),
        ({"model": TINY_CHAT, "training_file": assistants}, "training_file"),
        (
            {"model": TINY_CHAT, "training_file": good, "validation_file": "file-nope"},
            "validation_file",
        ),
        ({"model": TINY_CHAT, "training_file": good, "suffix": "x" * 65}, "suffix"),
        ({"model": TINY_CHAT, "training_file": good, "metadata": {"k": 1}}, "metadata"),
    ]
    for params, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.fine_tuning.jobs.create(**params)
        assert e.value.body["param"] == param, params  # type: ignore[index]


def test_invalid_files_fail_the_job_with_codes(client: openai.OpenAI) -> None:
    few = create(client, n=3)
    broken = client.fine_tuning.jobs.create(
        model=TINY_CHAT, training_file=upload(client, chat_lines(10) + b"{not json\n")
    )
    bad_valid = create(client, validation_file=upload(client, b'{"foo": 1}\n', "v.jsonl"))
    for job_id, code, param, text in [
        (few.id, "invalid_n_examples", "training_file", "Training file has 3 example(s)"),
        (broken.id, "invalid_training_file", "training_file", "Line 11"),
        (bad_valid.id, "invalid_validation_file", "validation_file", "Line 1"),
    ]:
        job = wait_for(client, job_id, TERMINAL)
        assert job.status == "failed"
        assert (job.error.code, job.error.param) == (code, param)
        assert text in job.error.message
        assert job.fine_tuned_model is None
        assert all_events(client, job_id)[0].level == "error"


def test_cancel_and_pause_resume(client: openai.OpenAI) -> None:
    hp = {"n_epochs": 50, "batch_size": 1}  # long enough to interrupt
    job = create(client, hyperparameters=hp)
    wait_for(client, job.id, ("running",))
    wait_until(
        lambda: any(e.type == "metrics" for e in all_events(client, job.id)),
        timeout=120,
        every=0.1,
        what="a step",
    )
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    wait_until(
        lambda: any("Training paused at step" in e.message for e in all_events(client, job.id)),
        timeout=120,  # a deadline against hangs: a new training process starts slowly on busy cores
        every=0.1,
        what="the pause to be acknowledged",
    )
    paused_at = max(e.data["step"] for e in all_events(client, job.id) if e.type == "metrics")
    resumed = client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    wait_for(client, job.id, ("running",))
    wait_until(
        lambda: any(
            e.message.startswith("Resumed from the checkpoint") for e in all_events(client, job.id)
        ),
        timeout=120,
        every=0.1,
        what="the resumed run",
    )
    assert f"Resumed from the checkpoint at step {paused_at}" in [
        e.message for e in all_events(client, job.id)
    ]

    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    for op in (
        client.fine_tuning.jobs.cancel,
        client.fine_tuning.jobs.pause,
        client.fine_tuning.jobs.resume,
    ):
        with pytest.raises(openai.BadRequestError):
            op(job.id)
    # The worker stopped the cancelled job's process and is free again: the next job
    # runs, and the cancelled one stayed cancelled without a model.
    nxt = create(client, hyperparameters={"n_epochs": 1})
    assert wait_for(client, nxt.id, TERMINAL).status == "succeeded"
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "cancelled" and job.fine_tuned_model is None


def test_projects_are_isolated(tiny_settings: Settings) -> None:
    settings = fast_settings(tiny_settings, api_keys="ka:alpha,kb:beta")
    with run_server(settings) as url:
        a, b = sdk(url, "ka"), sdk(url, "kb")
        job = create(a, hyperparameters={"n_epochs": 1})
        done = wait_for(a, job.id, TERMINAL)
        assert done.status == "succeeded"
        assert ":alpha:" in done.fine_tuned_model
        for call in (
            lambda: b.fine_tuning.jobs.retrieve(job.id),
            lambda: b.fine_tuning.jobs.cancel(job.id),
            lambda: b.fine_tuning.jobs.list_events(job.id),
            lambda: b.fine_tuning.jobs.checkpoints.list(job.id),
            lambda: b.models.retrieve(done.fine_tuned_model),
        ):
            with pytest.raises(openai.NotFoundError):
                call()
        assert b.fine_tuning.jobs.list().data == []
        assert done.fine_tuned_model not in {m.id for m in b.models.list()}
        # b cannot train on a's file or continue a's model either
        with pytest.raises(openai.BadRequestError) as e:
            b.fine_tuning.jobs.create(model=TINY_CHAT, training_file=job.training_file)
        assert e.value.body["param"] == "training_file"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as e:
            b.fine_tuning.jobs.create(
                model=done.fine_tuned_model, training_file=upload(b, chat_lines(10))
            )
        assert e.value.body["param"] == "model"  # type: ignore[index]


def test_continue_training_from_a_fine_tuned_model(client: openai.OpenAI) -> None:
    first = wait_for(client, create(client, hyperparameters={"n_epochs": 1}).id, TERMINAL)
    second = create(client, model=first.fine_tuned_model, hyperparameters={"n_epochs": 1})
    done = wait_for(client, second.id, TERMINAL)
    assert done.status == "succeeded", done.error
    assert done.model == first.fine_tuned_model
    assert done.fine_tuned_model.startswith(f"ft:{TINY_CHAT}:")


@pytest.mark.slow
def test_concurrent_jobs_each_get_their_own_model(client: openai.OpenAI) -> None:
    # Created in the same instant (ids share their time prefix), trained one by one.
    file_id = upload(client, chat_lines(12))

    def start(_: int) -> str:
        return client.fine_tuning.jobs.create(
            model=TINY_CHAT,
            training_file=file_id,
            suffix="same",
            hyperparameters={"n_epochs": 1, "batch_size": 12},
        ).id

    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(start, range(3)))
    done = [wait_for(client, job_id, TERMINAL, timeout=300) for job_id in ids]
    assert [j.status for j in done] == ["succeeded"] * 3
    names = [j.fine_tuned_model for j in done]
    assert len(set(names)) == 3
    for job in done:  # each job's model is its own last checkpoint
        (last,) = client.fine_tuning.jobs.checkpoints.list(job.id).data
        assert last.fine_tuned_model_checkpoint == job.fine_tuned_model
    assert set(names) <= {m.id for m in client.models.list()}
