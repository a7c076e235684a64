"""The dashboard's lists and the pages of the APIs still landing, in headless Chromium.

- Another project's key sees none of the first project's resources, on any page or
  at any direct address (with the first project seeing them, as the control).
- With 1,000 jobs and 10,000 files a page holds one page of rows and pages through
  them by cursor (the rows are written straight into the database: only the lists
  are under test here).
- Evals, against the real Evals API: runs (one graded from given samples, one
  sampling the tiny model), pass rates per criterion and per model, per-item
  verdicts; a run's report_url opens that run; an eval the project does not have is
  an error on the page.
- Batches: real batches, run by the server's batch worker, show their counts and
  their output downloads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support import (
    register_models,
    run_server,
    screenshot,
    seed_lists,
    sign_in,
    wait_until,
)
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.jobs.tables import Job
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.browser

KEYS = "key-alpha:alpha,key-beta:beta,key-gamma:gamma"


def settings_for(root: Path, model_cache: Path, tiny_chat_dir: Path) -> Settings:
    settings = Settings(data_dir=root / "data", cache_dir=model_cache, api_keys=KEYS)
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    return settings


@pytest.fixture(scope="module")
def runtime(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Runtime:
    # No embedded worker: the jobs made here only have to exist, not train.
    root = tmp_path_factory.mktemp("dashboard-pages")
    return build_runtime(settings_for(root, model_cache, tiny_chat_dir), embedded_worker=False)


@pytest.fixture(scope="module")
def url(runtime: Runtime) -> Iterator[str]:
    with run_server(runtime) as base:
        yield base


def api(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {key}"})


def alpha_resources(url: str, runtime: Runtime) -> dict[str, str]:
    """A file, a job, a vector store and a fine-tuned model of project alpha."""
    with api(url, "key-alpha") as c:
        example = {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        }
        lines = (json.dumps(example) + "\n").encode() * 10
        file_id = c.post(
            "/files", files={"file": ("alpha-secret.jsonl", lines)}, data={"purpose": "fine-tune"}
        ).json()["id"]
        job_id = c.post(
            "/fine_tuning/jobs", json={"model": TINY_CHAT, "training_file": file_id}
        ).json()["id"]
        store_id = c.post("/vector_stores", json={"name": "alpha-store"}).json()["id"]
    model = "ft:tiny-chat:alpha:secret:abcd1234"
    runtime.catalog.register_fine_tuned(
        project="alpha",
        model_id=model,
        base_model=TINY_CHAT,
        path=Path("/nonexistent"),
        kind="lora",
    )
    return {"file": file_id, "job": job_id, "store": store_id, "model": model}


def test_another_projects_key_sees_nothing_of_it(page: Any, url: str, runtime: Runtime) -> None:
    ids = alpha_resources(url, runtime)
    secrets = [*ids.values(), "alpha-secret.jsonl", "alpha-store"]
    # Each list page is read once it has loaded: its rows, or its "nothing here".
    loaded = {
        "jobs": "[data-testid=job-row], .empty",
        "files": "[data-testid=file-row], .empty",
        "stores": "[data-testid=store-row], .empty",
    }

    def visible(key: str) -> str:
        """The text of every list page and the playground's model choices, for `key`."""
        sign_in(page, url, key)
        seen = []
        for section, done in loaded.items():
            page.get_by_test_id(f"nav-{section}").click()
            page.locator(done).first.wait_for()
            seen.append(page.locator("main").inner_text())
        page.get_by_test_id("nav-playground").click()
        options = page.get_by_test_id("pane-model-0").locator("option")
        expect(options.filter(has_text=re.compile(f"^{TINY_CHAT}$"))).to_have_count(1)  # loaded
        seen.append(" ".join(options.all_inner_texts()))
        page.get_by_test_id("signout").click()
        return "\n".join(seen)

    alpha = visible("key-alpha")  # the control: the owner sees every one of them
    assert all(s in alpha for s in secrets), alpha
    beta = visible("key-beta")
    assert not [s for s in secrets if s in beta], beta

    # Direct addresses of alpha's objects are "not found" for beta.
    sign_in(page, url, "key-beta")
    for path in (f"jobs/{ids['job']}", f"files/{ids['file']}", f"stores/{ids['store']}"):
        page.goto(f"{url}/dashboard/{path}")
        expect(page.get_by_test_id("error")).to_contain_text("No ")
        text = page.locator("main").inner_text()
        assert not [s for s in ("alpha-secret.jsonl", "alpha-store", ids["model"]) if s in text]


def test_job_actions_pause_resume_and_cancel(page: Any, url: str, runtime: Runtime) -> None:
    # No worker runs here, so the job waits in the queue for the buttons.
    with api(url, "key-alpha") as c:
        example = {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        }
        data = (json.dumps(example) + "\n").encode() * 10
        file_id = c.post(
            "/files", files={"file": ("queue.jsonl", data)}, data={"purpose": "fine-tune"}
        ).json()["id"]
        job_id = c.post(
            "/fine_tuning/jobs", json={"model": TINY_CHAT, "training_file": file_id}
        ).json()["id"]
    with runtime.db.begin() as s:
        s.get(Job, job_id).status = "queued"  # as a worker leaves it after validation
    sign_in(page, url, "key-alpha")
    page.goto(f"{url}/dashboard/jobs/{job_id}")
    job = page.get_by_test_id("job")
    for button, status in (("pause", "paused"), ("resume", "queued"), ("cancel", "cancelled")):
        page.get_by_test_id(button).click()
        expect(job).to_have_attribute("data-status", status)
    for button in ("pause", "resume", "cancel"):  # a finished job offers none of them
        expect(page.get_by_test_id(button)).to_have_count(0)
    # The log follows the job by polling; give it a few rounds on a busy machine.
    expect(page.get_by_test_id("event-log")).to_contain_text("Job cancelled", timeout=20_000)


def test_lists_page_through_1000_jobs_and_10000_files(
    page: Any, url: str, runtime: Runtime
) -> None:
    seed_lists(runtime, "gamma", n_jobs=1000, n_files=10_000)
    asked: list[httpx.URL] = []
    page.on("request", lambda r: asked.append(httpx.URL(r.url)) if "/v1/" in r.url else None)
    sign_in(page, url, "key-gamma")

    rows = page.get_by_test_id("job-row")
    expect(rows).to_have_count(25)
    first = rows.evaluate_all("rs => rs.map(r => r.dataset.id)")
    for n in (2, 3, 4):
        page.get_by_test_id("next").click()
        expect(page.get_by_test_id("page-number")).to_contain_text(str(n))
    expect(rows).to_have_count(25)
    fourth = rows.evaluate_all("rs => rs.map(r => r.dataset.id)")
    assert not set(first) & set(fourth)
    page.get_by_test_id("prev").click()
    expect(page.get_by_test_id("page-number")).to_contain_text("3")
    screenshot(page, "jobs-paged")

    page.get_by_test_id("nav-files").click()
    files = page.get_by_test_id("file-row")
    expect(files).to_have_count(50)
    expect(files.first).to_contain_text("seeded-09999.jsonl")  # newest first
    page.get_by_test_id("next").click()
    expect(files.first).to_contain_text("seeded-09949.jsonl")
    expect(files).to_have_count(50)

    # Every list call asked for one page; finished jobs cost no extra calls.
    jobs_calls = [u for u in asked if u.path == "/v1/fine_tuning/jobs"]
    files_calls = [u for u in asked if u.path == "/v1/files"]
    assert len(jobs_calls) >= 5 and len(files_calls) >= 2
    assert {u.params.get("limit") for u in jobs_calls} == {"25"}
    assert {u.params.get("limit") for u in files_calls} == {"50"}
    assert not [u for u in asked if u.path.endswith("/events")]


def test_an_unknown_eval_is_an_error_on_its_page(page: Any, url: str) -> None:
    sign_in(page, url, "key-alpha")
    page.goto(url + "/dashboard/evals/eval_123?run_id=evalrun_456")  # a report_url
    expect(page.get_by_test_id("error")).to_contain_text("eval_123")


# --------------------------------------------------------------------------------------
# The real Evals and Batch APIs, their work done by the runtime's own runners.

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid")]


def capitals_eval(url: str) -> tuple[str, list[dict[str, Any]]]:
    """An eval with two criteria and two finished runs: one graded from given samples
    (two of three right), one sampling the tiny model. (eval id, runs)"""
    with api(url, "key-alpha") as c:
        ev = c.post(
            "/evals",
            json={
                "name": "capitals",
                "data_source_config": {
                    "type": "custom",
                    "item_schema": {
                        "type": "object",
                        "properties": {"country": {"type": "string"}, "answer": {"type": "string"}},
                        "required": ["country", "answer"],
                    },
                    "include_sample_schema": True,
                },
                "testing_criteria": [
                    {"type": "string_check", "name": "exact", "operation": "eq",
                     "input": "{{sample.output_text}}", "reference": "{{item.answer}}"},
                    {"type": "string_check", "name": "answered", "operation": "ne",
                     "input": "{{sample.output_text}}", "reference": ""},
                ],
            },
        ).json()  # fmt: skip
        given = ["Paris", "Rome", "London"]
        rows = [
            {"item": {"country": c, "answer": a}, "sample": {"output_text": g}}
            for (c, a), g in zip(CAPITALS, given, strict=True)
        ]
        sampled = {
            "type": "completions",
            "model": TINY_CHAT,
            "source": {"type": "file_content", "content": [{"item": r["item"]} for r in rows]},
            "input_messages": {
                "type": "template",
                "template": [{"role": "user", "content": "Capital of {{item.country}}?"}],
            },
            "sampling_params": {"temperature": 0, "max_completion_tokens": 4},
        }
        ids = [
            c.post(
                f"/evals/{ev['id']}/runs",
                json={"name": name, "data_source": source},
            ).json()["id"]
            for name, source in (
                ("given answers",
                 {"type": "jsonl", "source": {"type": "file_content", "content": rows}}),
                ("tiny model", sampled),
            )
        ]  # fmt: skip

        def finished() -> list[dict[str, Any]] | None:
            runs = [c.get(f"/evals/{ev['id']}/runs/{i}").json() for i in ids]
            return runs if all(r["status"] == "completed" for r in runs) else None

        return ev["id"], wait_until(finished, timeout=120, every=0.3, what="both eval runs")


def test_evals_page_shows_rates_per_criterion_model_and_item(
    page: Any, url: str, runtime: Runtime
) -> None:
    runner = runtime.new_eval_runner()  # this server has no embedded worker
    runner.start()
    try:
        eval_id, (given, sampled) = capitals_eval(url)
    finally:
        runner.close()
    assert given["report_url"] == f"{url}/dashboard/evals/{eval_id}?run_id={given['id']}"
    sign_in(page, url, "key-alpha")
    page.get_by_test_id("nav-evals").click()
    page.get_by_role("link", name="capitals").click()
    expect(page.get_by_test_id("run-row")).to_have_count(2)
    expect(page.get_by_test_id("per-model").locator("canvas").first).to_be_visible()
    # The sampled run: what the page says is what the API counted.
    page.goto(sampled["report_url"])
    counts = sampled["result_counts"]
    run = page.get_by_test_id("run")
    expect(run.get_by_test_id("pass-rate")).to_contain_text(
        f"{counts['passed']} of {counts['total']} passed"
    )
    # A run's report_url opens that run.
    page.goto(given["report_url"])
    expect(run.get_by_test_id("pass-rate")).to_contain_text("2 of 3 passed (66.7%)")
    expect(run.get_by_test_id("per-criterion").locator("canvas").first).to_be_visible()
    items = page.get_by_test_id("eval-item")
    expect(items).to_have_count(3)
    wrong = items.filter(has_text="London")
    expect(wrong).to_have_attribute("data-status", "fail")
    expect(wrong).to_contain_text("✗ exact")
    screenshot(page, "evals")
    run.locator("select").select_option("fail")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("London")


def _batch(api: httpx.Client, lines: list[dict[str, Any]]) -> dict[str, Any]:
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    up = api.post("/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", data)})
    up.raise_for_status()
    body = {
        "input_file_id": up.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    created = api.post("/batches", json=body)
    created.raise_for_status()
    return created.json()  # type: ignore[no-any-return]


def test_batches_page_shows_counts_and_downloads_output(page: Any, url: str) -> None:
    api = httpx.Client(base_url=url + "/v1", headers={"Authorization": "Bearer key-alpha"})
    hello = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    done = _batch(
        api,
        [
            {
                "custom_id": "ok",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": TINY_CHAT, **hello},
            },
            {
                "custom_id": "too-long",  # fails when it runs: past the context length
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": TINY_CHAT, **hello, "max_tokens": 10**6},
            },
        ],
    )

    def finished() -> dict[str, Any] | None:
        b = api.get(f"/batches/{done['id']}").json()
        assert b["status"] not in ("failed", "expired", "cancelled"), b["errors"]
        return b if b["status"] == "completed" else None

    batch = wait_until(finished, timeout=120, every=0.2, what="the batch to complete")
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    expected = api.get(f"/files/{batch['output_file_id']}/content").content
    assert [json.loads(x)["custom_id"] for x in expected.splitlines()] == ["ok"]

    sign_in(page, url, "key-alpha")
    page.get_by_test_id("nav-batches").click()
    row = page.locator(f'[data-testid="batch-row"]:has-text("{done["id"]}")')
    expect(row).to_contain_text("1 done, 1 failed of 2")
    expect(row).to_have_attribute("data-status", "completed")
    screenshot(page, "batches")
    with page.expect_download() as download:
        row.get_by_test_id("batch-output").click()
    assert Path(download.value.path()).read_bytes() == expected
    assert download.value.suggested_filename == f"{done['id']}-output.jsonl"
