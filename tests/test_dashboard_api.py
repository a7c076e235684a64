"""The dashboard's server side over real HTTP: the page and its scripts, and the
/v1/dashboard endpoints (session, models, a training file's report) behind the keys.

The pages themselves are driven in Chromium by tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import run_server
from tests.test_jobs_api import chat_lines
from tests.tiny_models import TINY_CHAT
from tunelab.api.dashboard import pages
from tunelab.settings import Settings

pytestmark = pytest.mark.api

KEYS = "key-alpha:alpha,key-beta:beta"


@pytest.fixture
def url(tiny_settings: Settings) -> Iterator[str]:
    tiny_settings.api_keys = KEYS
    with run_server(tiny_settings) as base:
        yield base


def client(url: str, key: str = "key-alpha") -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def upload(
    c: httpx.Client, data: bytes, name: str = "train.jsonl", purpose: str = "fine-tune"
) -> str:
    r = c.post("/v1/files", files={"file": (name, data)}, data={"purpose": purpose})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def report(c: httpx.Client, file_id: str, **params: object) -> httpx.Response:
    return c.get(f"/v1/dashboard/files/{file_id}/report", params={"model": TINY_CHAT, **params})


def test_every_dashboard_path_serves_the_page_and_its_scripts(url: str) -> None:
    for path in ("/dashboard/", "/dashboard/jobs/ftjob-anything", "/dashboard/evals/eval_1"):
        r = httpx.get(url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert '<base href="/dashboard/">' in r.text  # relative URLs resolve under /dashboard/
        assert "cdn" not in r.text.lower() and "https://" not in r.text  # nothing from elsewhere
    assert httpx.get(url + "/").headers.get("location") == "/dashboard/"
    for script in ("app.js", "vendor/preact.mjs", "vendor/echarts.esm.min.mjs"):
        r = httpx.get(f"{url}/dashboard/static/{script}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"], script
    # The page needs no key; the data behind it does.
    assert httpx.get(url + "/v1/dashboard/session").status_code == 401


def test_a_checkout_without_the_npm_libraries_says_how_to_get_them(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "VENDOR", tmp_path / "vendor")
    r = httpx.get(url + "/dashboard/")
    assert r.status_code == 503
    assert "make install" in r.text and "preact.mjs" in r.text


def test_session_names_the_keys_project_and_the_optional_apis(url: str) -> None:
    alpha = client(url).get("/v1/dashboard/session").json()
    assert alpha["project"] == "alpha" and alpha["auth_required"] is True
    # Optional APIs are listed only when this server routes them.
    # (asked with a key: without one every /v1 path is a 401, routed or not)
    routed = {p for p in ("evals", "batches") if client(url).get(f"/v1/{p}").status_code != 404}
    assert set(alpha["apis"]) == routed
    assert client(url, "key-beta").get("/v1/dashboard/session").json()["project"] == "beta"
    wrong = client(url, "nope").get("/v1/dashboard/session")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_models_carry_their_kind(url: str) -> None:
    models = {m["id"]: m for m in client(url).get("/v1/dashboard/models").json()["data"]}
    assert models[TINY_CHAT]["kind"] == "chat" and models[TINY_CHAT]["fine_tunable"] is True
    assert models["all-minilm-l6-v2"]["kind"] == "embedding"
    assert {m["fine_tune"] for m in models.values()} == {"base"}


def test_report_of_a_good_file_has_statistics_and_the_loss_mask(url: str) -> None:
    with client(url) as c:
        file_id = upload(c, chat_lines(12))
        r = report(c, file_id, preview=2)
    assert r.status_code == 200, r.text
    body = r.json()
    v, s = body["validation"], body["stats"]
    assert v["ok"] and v["n_examples"] == 12 and v["format"] == "chat" and v["problems"] == []
    assert s["n_examples"] == 12 and s["sampled"] == 12
    assert s["n_epochs"] == 8  # auto: 12 examples x 8 epochs reach the 100 examples target
    assert s["billed_tokens"] == s["total_tokens"] * 8 and s["estimated_seconds"] > 0
    assert 0 < s["trained_tokens"] < s["total_tokens"]
    assert [ex["line"] for ex in body["preview"]] == [1, 2]
    first = body["preview"][0]["segments"]
    trained = "".join(seg["text"] for seg in first if seg["trained"])
    untrained = "".join(seg["text"] for seg in first if not seg["trained"])
    # The assistant turn and its end-of-turn token are trained; the question is not.
    assert trained.startswith("Ahoy! Answer 0.") and "Question number 0?" in untrained
    assert "Question" not in trained


def test_report_lists_each_bad_line(url: str) -> None:
    lines = chat_lines(12).decode().splitlines()
    lines[3] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    lines[6] = "{not json"
    with client(url) as c:
        file_id = upload(c, ("\n".join(lines) + "\n").encode())
        body = report(c, file_id).json()
    v = body["validation"]
    assert not v["ok"] and v["problem_count"] == 2
    assert [p["line"] for p in v["problems"]] == [4, 7]
    assert "assistant" in v["problems"][0]["message"] and "JSON" in v["problems"][1]["message"]
    # Statistics still describe the ten usable examples.
    assert v["n_examples"] == 10 and body["stats"]["n_examples"] == 10
    assert 4 not in [ex["line"] for ex in body["preview"]]


def test_report_refusals_name_the_field(url: str) -> None:
    with client(url) as c:
        tune = upload(c, chat_lines(12))
        doc = upload(c, b"a manual", name="manual.txt", purpose="assistants")
        cases = [
            (report(c, doc), 400, "file_id"),
            (report(c, tune, model="all-minilm-l6-v2"), 400, "model"),
            (report(c, tune, model="no-such-model"), 404, "model"),
            (report(c, tune, preview=21), 400, "preview"),
        ]
        for response, status, param in cases:
            assert response.status_code == status, response.text
            assert response.json()["error"]["param"] == param
        # Another project's file does not exist for this key.
        other = report(client(url, "key-beta"), tune)
        assert other.status_code == 404 and "alpha" not in other.text
