"""The Evals API through the official SDK: evals, runs, output items, per project.

The chat engine is scripted (answers are a function of the prompt), so these tests
check the API and the runner, not a model's whims; graders judged by a real model
are in test_evals_graders.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from tests.support import ScriptedChatEngine, run_server, sdk, wait_until
from tunelab.evals import states
from tunelab.evals.tables import EvalRunRow
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.api

MODEL = "smollm2-135m-instruct"
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "label": {"type": "string"}},
    "required": ["question", "label"],
}
EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.label }}",
    "operation": "eq",
}


def scripted_answer(prompt: str) -> str:
    """'billing' for questions about money, 'bug' for the rest; 'slow' sleeps a little
    (for cancelling)."""
    question = prompt.rsplit("user\n", 1)[-1]
    if "slow" in question:
        time.sleep(0.3)
    label = "billing" if re.search(r"refund|invoice|charge", question) else "bug"
    return json.dumps({"category": label}) if "json please" in question else label


ROWS = [
    {"item": {"question": "I want a refund", "label": "billing"}},
    {"item": {"question": "The app crashes", "label": "bug"}},
    {"item": {"question": "Wrong charge on my invoice", "label": "billing"}},
    {"item": {"question": "Where is my parcel?", "label": "shipping"}},
]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Iterator[tuple[Any, Runtime, str]]:
    """One server for the module (each test makes its own evals)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("evals") / "data",
        cache_dir=model_cache,
        api_keys="key-alpha:alpha,key-beta:beta",
        worker_poll_seconds=0.1,
    )
    engine = ScriptedChatEngine(AutoTokenizer.from_pretrained(tiny_chat_dir), scripted_answer)
    runtime = build_runtime(settings, chat_engine=engine)
    with run_server(runtime) as url:
        yield engine, runtime, url


def _eval(client: openai.OpenAI, criteria: list[dict[str, Any]] | None = None) -> Any:
    return client.evals.create(
        name="tickets",
        data_source_config={"type": "custom", "item_schema": SCHEMA, "include_sample_schema": True},
        testing_criteria=criteria or [EXACT],  # type: ignore[list-item]
    )


def _finished(client: openai.OpenAI, eval_id: str, run_id: str, timeout: float = 60) -> Any:
    def done() -> Any:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        return run if run.status in states.TERMINAL else None

    return wait_until(done, timeout=timeout)


def _completions(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "completions",
        "model": MODEL,
        "source": {"type": "file_content", "content": rows},
        "input_messages": {
            "type": "template",
            "template": [
                {"role": "system", "content": "Classify the ticket."},
                {"role": "user", "content": "{{item.question}}"},
            ],
        },
        "sampling_params": {"temperature": 0, "max_completion_tokens": 8},
        **extra,
    }


def test_completions_run_grades_each_row(served) -> None:
    engine, _, url = served
    client = sdk(url, "key-alpha")
    ev = _eval(client)
    assert ev.testing_criteria[0].id.startswith("exact-")
    assert ev.testing_criteria[0].input == "{{sample.output_text}}"  # spacing normalised
    assert ev.data_source_config.schema_["required"] == ["item", "sample"]

    run = client.evals.runs.create(ev.id, data_source=_completions(ROWS))  # type: ignore[arg-type]
    assert run.status in ("queued", "in_progress") and run.model == MODEL
    run = _finished(client, ev.id, run.id)
    assert run.status == "completed", run.error
    assert run.result_counts.model_dump() == {"total": 4, "errored": 0, "failed": 1, "passed": 3}
    [per] = run.per_testing_criteria_results
    assert (per.testing_criteria, per.passed, per.failed) == (ev.testing_criteria[0].id, 3, 1)
    [usage] = run.per_model_usage
    assert usage.model_name == MODEL and usage.invocation_count == 4 and usage.prompt_tokens > 0
    # The template was rendered with each item, after the system line.
    prompts = [text for _, text in engine.prompts]
    assert any("Classify the ticket." in p and "I want a refund" in p for p in prompts)

    items = list(client.evals.runs.output_items.list(run.id, eval_id=ev.id))
    assert sorted(i.datasource_item_id for i in items) == [0, 1, 2, 3]
    failed = list(client.evals.runs.output_items.list(run.id, eval_id=ev.id, status="fail"))
    assert [i.datasource_item["label"] for i in failed] == ["shipping"]
    one = client.evals.runs.output_items.retrieve(failed[0].id, eval_id=ev.id, run_id=run.id)
    assert one.sample.output[0].content == "bug" and one.results[0].score == 0.0
    assert one.sample.input[-1].content == "Where is my parcel?"


def test_jsonl_run_grades_given_samples_from_a_file(served) -> None:
    _, _, url = served
    client = sdk(url, "key-alpha")
    ev = _eval(
        client,
        [
            {**EXACT, "operation": "ilike", "name": "contains"},
            {
                "type": "text_similarity",
                "name": "fuzzy",
                "input": "{{sample.output_text}}",
                "reference": "{{item.label}}",
                "evaluation_metric": "fuzzy_match",
                "pass_threshold": 0.5,
            },
        ],
    )
    lines = [
        '{"item": {"question": "q1", "label": "billing"}, "sample": {"output_text": "BILLING!"}}',
        '{"item": {"question": "q2", "label": "bug"}, "sample": {"output_text": "a feature"}}',
    ]
    f = client.files.create(file=("rows.jsonl", "\n".join(lines).encode()), purpose="evals")
    run = client.evals.runs.create(
        ev.id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": f.id}}
    )
    run = _finished(client, ev.id, run.id)
    # Row 1: "billing" in "BILLING!" ignoring case, but fuzzy ratio("BILLING!", "billing")
    # is low (case differs): it fails the second criterion.
    assert run.result_counts.passed == 0 and run.result_counts.failed == 2
    by_name = {r.testing_criteria.split("-")[0]: r for r in run.per_testing_criteria_results}
    assert (by_name["contains"].passed, by_name["fuzzy"].passed) == (1, 0)


def test_another_projects_eval_does_not_exist(served) -> None:
    _, _, url = served
    alpha, beta = sdk(url, "key-alpha"), sdk(url, "key-beta")
    ev = _eval(alpha)
    run = alpha.evals.runs.create(ev.id, data_source=_completions(ROWS[:1]))  # type: ignore[arg-type]
    before = [e.id for e in alpha.evals.list(limit=100)]
    with pytest.raises(openai.NotFoundError):
        beta.evals.retrieve(ev.id)
    with pytest.raises(openai.NotFoundError):
        beta.evals.runs.retrieve(run.id, eval_id=ev.id)
    with pytest.raises(openai.NotFoundError):
        beta.evals.runs.create(ev.id, data_source=_completions(ROWS[:1]))  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        beta.evals.delete(ev.id)
    assert [e.id for e in beta.evals.list()] == []
    assert ev.id in before and before == sorted(before)  # oldest first by default

    updated = alpha.evals.update(ev.id, name="renamed", metadata={"team": "support"})
    assert updated.name == "renamed" and updated.metadata == {"team": "support"}
    _finished(alpha, ev.id, run.id)
    assert [r.id for r in alpha.evals.runs.list(ev.id, status="completed")] == [run.id]
    assert alpha.evals.runs.delete(run.id, eval_id=ev.id).deleted
    assert alpha.evals.delete(ev.id).deleted
    with pytest.raises(openai.NotFoundError):
        alpha.evals.retrieve(ev.id)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"testing_criteria": [{**EXACT, "type": "regex_check"}]}, "testing_criteria[0].type"),
        ({"testing_criteria": [{**EXACT, "type": "python", "source": "def grade(s, i): return 1"}]},
         "testing_criteria[0].type"),
        ({"testing_criteria": [{**EXACT, "reference": "{{item.lable}}"}]},
         "testing_criteria[0].reference"),
        ({"testing_criteria": [{**EXACT, "operation": "regex"}]}, "testing_criteria[0].operation"),
        ({"data_source_config": {"type": "custom", "item_schema": {"type": "objekt"}}},
         "data_source_config.item_schema.type"),
        ({"testing_criteria": [{"type": "label_model", "name": "judge", "model": "gpt-9",
          "input": [{"role": "user", "content": "{{item.question}}"}], "labels": ["a", "b"],
          "passing_labels": ["a"]}]}, "testing_criteria[0].model"),
        ({"testing_criteria": [{"type": "multi", "name": "m", "graders": {"x": EXACT},
          "calculate_output": "x + __import__('os').getpid()", "pass_threshold": 1}]},
         "testing_criteria[0].calculate_output"),
    ],
)  # fmt: skip
def test_bad_eval_definitions_are_400_naming_the_field(served, change, param) -> None:
    _, _, url = served
    body = {
        "data_source_config": {"type": "custom", "item_schema": SCHEMA},
        "testing_criteria": [EXACT],
        **change,
    }
    r = httpx.post(url + "/v1/evals", json=body, headers={"Authorization": "Bearer key-alpha"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_bad_runs_are_400_naming_the_row(served) -> None:
    _, _, url = served
    client = sdk(url, "key-alpha")
    ev = _eval(client)
    bad_rows = [ROWS[0], {"item": {"question": "no label"}}]
    with pytest.raises(openai.BadRequestError) as e:
        client.evals.runs.create(ev.id, data_source=_completions(bad_rows))  # type: ignore[arg-type]
    assert e.value.body["param"] == "data_source.source.content[1].item"
    assert "label" in e.value.message
    template = _completions(ROWS)
    template["input_messages"]["template"][1]["content"] = "{{item.body}}"
    with pytest.raises(openai.BadRequestError) as e:
        client.evals.runs.create(ev.id, data_source=template)  # type: ignore[arg-type]
    assert e.value.body["param"] == "data_source.input_messages.template[1].content"
    with pytest.raises(openai.BadRequestError) as e:  # the criterion reads the sample
        client.evals.runs.create(
            ev.id,
            data_source={"type": "jsonl", "source": {"type": "file_content", "content": ROWS}},
        )
    assert e.value.body["param"] == "data_source.source.content[0].sample"
    assert list(client.evals.runs.list(ev.id)) == []  # nothing half-created


def test_cancel_stops_a_run(served) -> None:
    _, _, url = served
    client = sdk(url, "key-alpha")
    ev = _eval(client)
    slow = [{"item": {"question": f"slow question {i}", "label": "bug"}} for i in range(40)]
    run = client.evals.runs.create(ev.id, data_source=_completions(slow))  # type: ignore[arg-type]
    wait_until(
        lambda: client.evals.runs.retrieve(run.id, eval_id=ev.id).result_counts.total > 0,
        timeout=60,
    )
    canceled = client.evals.runs.cancel(run.id, eval_id=ev.id)
    assert canceled.status == "canceled"
    time.sleep(1.5)  # longer than a chunk takes: no row is graded after the cancel
    after = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert after.status == "canceled" and after.result_counts.total < 40
    assert after.result_counts.total == len(list(client.evals.runs.output_items.list(
        run.id, eval_id=ev.id, limit=100)))  # fmt: skip
    with pytest.raises(openai.BadRequestError):
        client.evals.runs.cancel(run.id, eval_id=ev.id)


def test_report_url_opens_the_run_on_the_dashboard(served) -> None:
    _, _, url = served
    client = sdk(url, "key-alpha")
    ev = _eval(client)
    run = client.evals.runs.create(ev.id, data_source=_completions(ROWS))  # type: ignore[arg-type]
    assert run.report_url == f"{url}/dashboard/evals/{ev.id}?run_id={run.id}"
    page = httpx.get(run.report_url)  # the dashboard's page; it signs in with a key
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_a_run_left_by_a_dead_runner_resumes(settings: Settings, tiny_chat_dir: Path) -> None:
    """A run whose runner died mid-way (it holds the run, its heartbeat is old) is
    re-queued by the next runner and finishes, keeping the rows already graded."""
    engine = ScriptedChatEngine(AutoTokenizer.from_pretrained(tiny_chat_dir), scripted_answer)
    first = build_runtime(settings, chat_engine=engine, embedded_worker=False)
    with run_server(first) as url:
        client = sdk(url)
        ev = _eval(client)
        run = client.evals.runs.create(ev.id, data_source=_completions(ROWS))  # type: ignore[arg-type]
    with first.db.begin() as s:  # a runner takes it, then dies without a trace
        states.apply(s, run.id, states.START, now=time.time() - 600, worker_id="dead-runner")
    assert first.db().get(EvalRunRow, run.id).status == "in_progress"
    settings.worker_poll_seconds = 0.1
    second = build_runtime(settings, chat_engine=engine)
    with run_server(second) as url:
        done = _finished(sdk(url), ev.id, run.id)
    assert done.status == "completed" and done.result_counts.total == 4
    with second.db() as s:
        assert s.get(EvalRunRow, run.id).attempts == 2


def test_cli_compares_models_on_held_out_data(served, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from tunelab.cli.main import cli

    _, _, url = served
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": r["item"]["question"]},
                        {"role": "assistant", "content": r["item"]["label"]},
                    ]
                }
            )
            for r in ROWS
        )
    )
    monkeypatch.setenv("TUNELAB_BASE_URL", url + "/v1")
    monkeypatch.setenv("TUNELAB_API_KEY", "key-alpha")
    out = CliRunner().invoke(
        cli, ["evals", "run", "--models", MODEL, "--data", str(heldout), "--grader", "exact"]
    )
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if "completed" in line)
    assert re.search(r"completed\s*│\s*3\s*│\s*1\s*│\s*0\s*│\s*0\.750", row), row
    bad = CliRunner().invoke(
        cli, ["evals", "run", "--models", MODEL, "--data", str(heldout), "--grader", "regex"]
    )
    assert bad.exit_code != 0 and "Unknown grader 'regex'" in bad.output


def test_responses_run_with_json_output_reads_fields(served) -> None:
    """A `responses` data source with text.format json_object: graders read
    {{sample.output_json.<field>}} from the parsed answer."""
    _, _, url = served
    client = sdk(url, "key-alpha")
    ev = _eval(
        client,
        [{**EXACT, "name": "field", "input": "{{sample.output_json.category}}"}],
    )
    source = _completions(ROWS[:2])
    source["type"] = "responses"
    source["input_messages"]["template"][1]["content"] = "json please: {{item.question}}"
    source["sampling_params"] = {"temperature": 0, "text": {"format": {"type": "json_object"}}}
    run = client.evals.runs.create(ev.id, data_source=source)  # type: ignore[arg-type]
    run = _finished(client, ev.id, run.id)
    assert run.status == "completed" and run.result_counts.passed == 2, run.result_counts


def test_a_standalone_runner_grades_runs_of_a_server_without_one(
    settings: Settings, tiny_chat_dir: Path
) -> None:
    """`tunelab worker` runs an eval runner beside its job worker: a server started
    without an embedded worker still gets its runs graded."""
    settings.worker_poll_seconds = 0.1
    engine = ScriptedChatEngine(AutoTokenizer.from_pretrained(tiny_chat_dir), scripted_answer)
    runtime = build_runtime(settings, chat_engine=engine, embedded_worker=False)
    assert runtime.eval_runner is None
    with run_server(runtime) as url:
        client = sdk(url)
        ev = _eval(client)
        run = client.evals.runs.create(ev.id, data_source=_completions(ROWS))  # type: ignore[arg-type]
        time.sleep(0.5)
        assert client.evals.runs.retrieve(run.id, eval_id=ev.id).status == "queued"
        runner = runtime.new_eval_runner()
        runner.start()
        try:
            assert _finished(client, ev.id, run.id).result_counts.passed == 3
        finally:
            runner.close()


def test_the_tutorials_comparison_grades_models_and_a_classifier(served, tmp_path) -> None:
    from tunelab.tutorial.compare import compare
    from tunelab.tutorial.session import Session

    _, _, url = served
    session = Session(client=sdk(url, "key-alpha"), workdir=tmp_path)
    rows = [{"prompt": r["item"]["question"], "completion": r["item"]["label"]} for r in ROWS]
    classifier = ["billing", "bug", "bug", "shipping"]  # one wrong
    results = compare(session, rows, {"base": MODEL}, classifier)
    assert [(r.name, r.passed, r.total) for r in results] == [
        ("base", 3, 4),
        ("embeddings + logistic regression", 3, 4),
    ]
    assert all("/dashboard/evals/" in r.report_url for r in results)
