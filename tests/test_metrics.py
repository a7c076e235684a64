"""/metrics: scraped over real HTTP while real traffic (a tiny in-code model) moves it."""

from __future__ import annotations

import io

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import chat_lines, run_server, sdk
from tests.tiny_models import TINY_CHAT
from tunelab.settings import Settings

pytestmark = pytest.mark.api

TOKEN = "scrape-secret"
HI = [{"role": "user", "content": "Say something."}]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_with_traffic_and_need_the_token(tiny_settings: Settings) -> None:
    settings = tiny_settings.model_copy(
        update={"metrics_token": TOKEN, "embedded_worker": False, "api_keys": "test-key"}
    )
    with run_server(settings) as url:
        root = url
        assert httpx.get(f"{root}/metrics").status_code == 401
        bad = httpx.get(f"{root}/metrics", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401

        before = scrape(root)
        client = sdk(url)
        used = 0
        for _ in range(2):
            r = client.chat.completions.create(
                model=TINY_CHAT, messages=HI, max_tokens=6, temperature=0
            )
            assert r.usage is not None
            used += r.usage.completion_tokens
        # A path parameter is counted under its route template, not the concrete path.
        auth = {"Authorization": "Bearer test-key"}
        assert httpx.get(f"{url}/v1/files/file-missing", headers=auth).status_code == 404
        assert httpx.get(f"{url}/v1/models/org/no-model", headers=auth).status_code == 404
        assert httpx.get(f"{root}/no/such/path").status_code == 404

        # No worker runs here, so a created job waits in the database's queue.
        lines = io.BytesIO(chat_lines(8))
        f = client.files.create(file=("train.jsonl", lines), purpose="fine-tune")
        client.fine_tuning.jobs.create(model=TINY_CHAT, training_file=f.id)

        after = scrape(root)

    chat = {"method": "POST", "route": "/v1/chat/completions", "status": "200"}
    requests = "tunelab_http_requests_total"
    assert value(after, requests, **chat) - value(before, requests, **chat) == 2
    missing = {"method": "GET", "route": "/v1/files/{file_id}", "status": "404"}
    assert value(after, requests, **missing) == 1
    # a {model:path} parameter spans segments and is still one template
    assert value(after, requests, method="GET", route="/v1/models/{model}", status="404") == 1
    assert value(after, requests, method="GET", route="<unmatched>", status="404") == 1
    # the scrape before counted itself once (each scrape is counted after it answers)
    assert value(after, requests, method="GET", route="/metrics", status="200") >= 1
    assert value(after, "tunelab_http_request_duration_seconds_count", **chat) == 2

    # the tokens the engine counted are the ones the responses reported
    assert value(after, "tunelab_generated_tokens_total", model=TINY_CHAT) == used > 0
    assert value(after, "tunelab_loaded_models", kind="chat", model=TINY_CHAT) == 1
    assert value(before, "tunelab_loaded_models", kind="chat", model=TINY_CHAT) == 0

    assert value(before, "tunelab_queue_depth", queue="jobs") == 0
    assert value(after, "tunelab_queue_depth", queue="jobs") == 1
    for queue in ("generation", "embedding", "ingestion", "batches"):
        assert ("tunelab_queue_depth", frozenset({("queue", queue)})) in after, queue
        assert value(after, "tunelab_queue_depth", queue=queue) == 0  # all traffic answered
