"""Context-grounded training data is laid out exactly as the grounded-answer path
(/v1/responses with file_search) lays out its prompt for the same question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import run_server, sdk, wait_until
from tunelab.api.app import create_app
from tunelab.cli.main import cli
from tunelab.protocol.responses import CreateResponse
from tunelab.responses.service import prepare
from tunelab.settings import Settings
from tunelab.tutorial.retrieval import CHUNKING

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.realmodel
def test_ground_data_prompts_equal_the_served_prompts(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = tmp_path / "qa.jsonl"
    lines = (EXAMPLES / "manual_qa_train.jsonl").read_text(encoding="utf-8").splitlines()[:6]
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    app = create_app(settings)
    with run_server(app) as url:
        client = sdk(url)
        f = client.files.create(
            file=(EXAMPLES / "manual" / "router_manual.md"), purpose="assistants"
        )
        store = client.vector_stores.create(
            name="manual", file_ids=[f.id], chunking_strategy=CHUNKING
        )
        store = wait_until(
            lambda: (s := client.vector_stores.retrieve(store.id)).status != "in_progress" and s,
            timeout=300,
        )
        monkeypatch.setenv("TUNELAB_BASE_URL", url + "/v1")
        out = tmp_path / "grounded.jsonl"
        result = CliRunner().invoke(
            cli, ["ground-data", "-f", str(pairs), "--store", store.id, "-k", "2", "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        examples = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(examples) >= 5
        for ex, line in zip(examples, lines, strict=False):
            pair = json.loads(line)
            request = CreateResponse(
                model="smollm2-135m-instruct",
                input=pair["question"],
                tools=[
                    {"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 2}
                ],
            )
            served = prepare(app.runtime.retrieval.searcher, "default", request).messages
            assert ex["messages"][:-1] == served
            answer = ex["messages"][-1]
            assert answer["role"] == "assistant" and answer["content"].startswith(pair["answer"])
            cited = int(answer["content"].rsplit("[", 1)[1].rstrip("]"))
            passage = served[1]["content"].split(f"[{cited}] (")[1]
            assert pair["must_contain"].lower() in passage.split("\n\n[")[0].lower()


def test_ground_data_names_the_bad_line(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELAB_BASE_URL", server + "/v1")
    bad = tmp_path / "qa.jsonl"
    bad.write_text(
        '{"question": "a?", "answer": "b"}\n{"question": "no answer"}\n', encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["ground-data", "-f", str(bad), "--store", "vs_x"])
    assert result.exit_code == 1
    assert "qa.jsonl line 2" in result.output and '"answer"' in result.output
