"""The 2023 API over HTTP: /v1/fine-tunes as a view over real jobs trained on the tiny
model (with the SSE follow stream that `openai api fine_tunes.follow` reads), and
/v1/engines. The unmodified openai 0.28 client runs the same in compat/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.support import register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.legacy.fine_tunes import job_id, legacy_id
from tunelab.settings import Settings

pytestmark = pytest.mark.api


@dataclass
class Env:
    client: openai.OpenAI
    http: httpx.Client
    file_id: str


@pytest.fixture
def env(settings: Settings, tiny_chat_dir) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(
        update={"worker_poll_seconds": 0.1, "default_chat_model": TINY_CHAT}
    )
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as url, httpx.Client(base_url=url + "/v1", timeout=300) as http:
        client = sdk(url)
        data = "".join(
            json.dumps({"prompt": f"Capital number {i} ->", "completion": f" City {i}.\n"}) + "\n"
            for i in range(12)
        ).encode()
        f = client.files.create(file=("file", data), purpose="fine-tune")  # as 0.28 names it
        yield Env(client, http, f.id)


def test_a_legacy_fine_tune_is_a_job_and_follow_streams_to_its_end(env: Env) -> None:
    body = {"training_file": env.file_id, "model": "davinci", "n_epochs": 1, "suffix": "caps"}
    ft = env.http.post("/fine-tunes", json=body).json()
    assert ft["object"] == "fine-tune" and ft["id"].startswith("ft-") and ft["status"] == "pending"
    assert ft["model"] == TINY_CHAT, "the job says which model really trains"
    assert ft["training_files"][0]["id"] == env.file_id, "full File objects, as 0.28 reads them"
    assert ft["hyperparams"]["n_epochs"] == 1
    job = env.client.fine_tuning.jobs.retrieve(job_id(ft["id"]))  # the same job, today's API
    assert legacy_id(job.id) == ft["id"]
    with env.http.stream("GET", f"/fine-tunes/{ft['id']}/events", params={"stream": "true"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [x for x in r.iter_lines() if x]
    assert lines[-1] == "data: [DONE]"
    messages = [json.loads(x.removeprefix("data: "))["message"] for x in lines[:-1]]
    assert messages[-1] == "Fine-tune succeeded", messages[-5:]
    done = env.http.get(f"/fine-tunes/{ft['id']}").json()
    assert done["status"] == "succeeded" and done["fine_tuned_model"].startswith(f"ft:{TINY_CHAT}:")
    assert f"Uploaded model: {done['fine_tuned_model']}" in messages
    assert done["result_files"][0]["purpose"] == "fine-tune-results"
    events = env.http.get(f"/fine-tunes/{ft['id']}/events").json()
    assert [e["message"] for e in events["data"]] == messages
    assert all(e["object"] == "fine-tune-event" for e in events["data"])
    assert ft["id"] in [x["id"] for x in env.http.get("/fine-tunes").json()["data"]]
    # 0.28's engine= URL quote_plus-es the model name into the path.
    engine = done["fine_tuned_model"].replace(":", "%3A")
    answer = env.http.post(
        f"/engines/{engine}/completions", json={"prompt": "Capital ->", "max_tokens": 3}
    )
    assert answer.status_code == 200 and answer.json()["model"] == done["fine_tuned_model"]


def test_cancel_unknown_ids_and_refusals(env: Env) -> None:
    ft = env.http.post("/fine-tunes", json={"training_file": env.file_id, "n_epochs": 1}).json()
    cancelled = env.http.post(f"/fine-tunes/{ft['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert env.http.get(f"/fine-tunes/{ft['id']}/events").json()["data"][-1]["message"] == (
        "Fine-tune cancelled"
    )
    assert env.http.get("/fine-tunes/ft-doesnotexist").status_code == 404
    for fields, param in [
        ({"compute_classification_metrics": True}, "compute_classification_metrics"),
        ({"classification_n_classes": 3}, "classification_n_classes"),
        ({"classification_positive_class": " yes"}, "classification_positive_class"),
        ({"prompt_loss_weight": 0.5}, "prompt_loss_weight"),
        ({"n_epochs": 0}, "n_epochs"),
        ({"learning_rate_multiplier": -1}, "learning_rate_multiplier"),
        ({"model": "no-such-model"}, "model"),
        ({"nonsense": 1}, "nonsense"),
    ]:
        r = env.http.post("/fine-tunes", json={"training_file": env.file_id, **fields})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (fields, r.text)


def test_engines(env: Env) -> None:
    engines = env.http.get("/engines").json()
    assert engines["object"] == "list" and TINY_CHAT in [e["id"] for e in engines["data"]]
    assert env.http.get(f"/engines/{TINY_CHAT}").json()["object"] == "engine"
    chat = env.http.post(
        "/engines/gpt-3.5-turbo/chat/completions",
        json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
    )
    assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
    bad = env.http.post("/engines/gpt-3.5-turbo/completions", json={"max_tokens": "lots"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_tokens"
