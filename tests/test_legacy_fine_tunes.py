"""The legacy fine-tunes view (contract §3.1) over real jobs trained on the tiny model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from tests.conftest import register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.api.app import create_app
from tunelab.errors import InvalidRequest, NotFound
from tunelab.jobs.service import JobService
from tunelab.legacy.fine_tunes import LegacyFineTunes, job_id, legacy_id
from tunelab.protocol.legacy import FineTuneCreate
from tunelab.settings import Settings

P = "default"


@dataclass
class Env:
    client: openai.OpenAI
    legacy: LegacyFineTunes
    file_id: str


@pytest.fixture
def env(settings: Settings, tiny_chat_dir) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(
        update={"worker_poll_seconds": 0.1, "default_chat_model": TINY_CHAT}
    )
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    app = create_app(settings)
    services = app.state.services
    with run_server(settings, app) as url:
        client = sdk(url)
        data = "".join(
            json.dumps({"prompt": f"Capital number {i} ->", "completion": f" City {i}.\n"}) + "\n"
            for i in range(12)
        ).encode()
        f = client.files.create(file=("file", data), purpose="fine-tune")  # as 0.28 names it
        legacy = LegacyFineTunes(JobService(services), services.files, poll_s=0.1)
        yield Env(client, legacy, f.id)


def test_a_legacy_fine_tune_is_a_job_and_follow_ends_with_its_model(env: Env) -> None:
    ft = env.legacy.create(
        P, FineTuneCreate(training_file=env.file_id, model="davinci", n_epochs=1, suffix="capitals")
    )
    assert ft.id.startswith("ft-") and ft.status == "pending"
    assert ft.model == TINY_CHAT, "the job says which model really trains"
    assert ft.training_files[0].id == env.file_id and ft.hyperparams["n_epochs"] == 1
    job = env.client.fine_tuning.jobs.retrieve(job_id(ft.id))  # the same job, today's API
    assert legacy_id(job.id) == ft.id
    deadline = time.monotonic() + 300
    messages = []
    for event in env.legacy.follow(P, ft.id):
        messages.append(event.message)
        assert time.monotonic() < deadline
    assert messages[-1] == "Fine-tune succeeded", messages[-5:]
    done = env.legacy.get(P, ft.id)
    assert done.status == "succeeded" and done.fine_tuned_model
    assert f"Uploaded model: {done.fine_tuned_model}" in messages
    assert done.fine_tuned_model.startswith(f"ft:{TINY_CHAT}:")
    assert done.result_files and done.result_files[0].purpose == "fine-tune-results"
    assert [e.message for e in env.legacy.events(P, ft.id)] == messages
    assert ft.id in [x.id for x in env.legacy.list(P)]
    answer = env.client.completions.create(
        model=done.fine_tuned_model, prompt="Capital ->", max_tokens=3
    )
    assert answer.model == done.fine_tuned_model


def test_cancel_and_unknown_ids(env: Env) -> None:
    ft = env.legacy.create(P, FineTuneCreate(training_file=env.file_id, n_epochs=1))
    assert env.legacy.cancel(P, ft.id).status == "cancelled"
    assert env.legacy.events(P, ft.id)[-1].message == "Fine-tune cancelled"
    with pytest.raises(NotFound):
        env.legacy.get(P, "ft-doesnotexist")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"compute_classification_metrics": True}, "compute_classification_metrics"),
        ({"classification_n_classes": 3}, "classification_n_classes"),
        ({"classification_positive_class": " yes"}, "classification_positive_class"),
        ({"prompt_loss_weight": 0.5}, "prompt_loss_weight"),
        ({"n_epochs": 0}, "n_epochs"),
        ({"learning_rate_multiplier": -1}, "learning_rate_multiplier"),
        ({"model": "babbage-002-nope"}, "model"),
    ],
)
def test_legacy_fields_are_mapped_or_refused_by_name(env: Env, fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        env.legacy.create(P, FineTuneCreate(training_file=env.file_id, **fields))
    assert e.value.param == param
