"""Grounded answers through `client.responses.create(..., tools=[file_search])`.

The shape tests run on a scripted chat engine, injected through the runtime; the
realmodel test answers with the embedded SmolLM2.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from transformers import AutoTokenizer

from tests.support import ScriptedChatEngine, run_server, sdk
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data"


def scripted_answer(prompt: str) -> str:
    """Cites passage [2] when the prompt has one, else passage [1]."""
    return "See the second passage [2]." if "[2]" in prompt else "Per the manual [1]."


def _index_docs(client: openai.OpenAI) -> tuple[str, str, str]:
    vs = client.vector_stores.create(name="docs")
    manual = client.vector_stores.files.upload_and_poll(
        vector_store_id=vs.id, file=("manual.md", (DATA / "manual.md").read_bytes())
    )
    zh = client.vector_stores.files.upload_and_poll(
        vector_store_id=vs.id, file=("说明书.md", (DATA / "manual_zh.md").read_bytes())
    )
    assert manual.status == zh.status == "completed"
    return vs.id, manual.id, zh.id


def _settings(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("resp") / "data", cache_dir=model_cache)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path):
    """A server whose chat engine is scripted: the API shape without a model's whims."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_dir)
    engine = ScriptedChatEngine(tokenizer, scripted_answer)
    runtime = build_runtime(_settings(tmp_path_factory, model_cache), chat_engine=engine)
    with run_server(runtime) as url:
        client = sdk(url)
        yield engine, client, *_index_docs(client)


@pytest.fixture(scope="module")
def served_real(tmp_path_factory: pytest.TempPathFactory, model_cache: Path):
    with run_server(_settings(tmp_path_factory, model_cache)) as url:
        client = sdk(url)
        yield client, *_index_docs(client)


def rendered(engine: ScriptedChatEngine, messages: list[dict[str, str]]) -> str:
    """A chat as the engine's tokenizer renders it for generation."""
    return engine.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_answer_cites_the_passage_it_used(served):
    engine, client, vs_id, manual_id, _ = served
    question = "How heavy is the machine?"
    resp = client.responses.create(
        model="smollm2-135m-instruct",
        input=question,
        instructions="Answer in one sentence.",
        tools=[{"type": "file_search", "vector_store_ids": [vs_id], "max_num_results": 3}],
        include=["file_search_call.results"],
    )
    call, message = resp.output
    assert call.type == "file_search_call" and call.queries == [question]
    assert len(call.results) == 3 and any("9.4 kg" in r.text for r in call.results)
    text = message.content[0]
    assert resp.output_text == text.text == "See the second passage [2]."
    (cite,) = text.annotations
    assert cite.type == "file_citation" and cite.file_id == call.results[1].file_id == manual_id
    assert cite.filename == "manual.md" and cite.index == text.text.index("[2]")
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens > 0
    # The prompt is the grounded layout: instructions, numbered passages, then the question.
    ids, prompt = engine.prompts[-1]
    assert resp.usage.input_tokens == len(ids)
    assert prompt.startswith("<|im_start|>system\nAnswer in one sentence.")
    assert "[1] (" in prompt
    assert prompt.endswith(f"Question: {question}<|im_end|>\n<|im_start|>assistant\n")


def test_chinese_question_is_answered_and_cited(served):
    engine, client, vs_id, _, zh_id = served
    resp = client.responses.create(
        model="gpt-4o-mini",
        input=[{"role": "user", "content": "忘记管理密码了，怎样恢复出厂设置？"}],
        tools=[{"type": "file_search", "vector_store_ids": [vs_id], "max_num_results": 1}],
    )
    call, message = resp.output
    assert call.results is None  # only with include=["file_search_call.results"]
    (cite,) = message.content[0].annotations
    assert cite.file_id == zh_id and cite.filename == "说明书.md"
    assert "复位孔" in engine.prompts[-1][1]


def test_streaming_events(served):
    engine, client, vs_id, _, _ = served
    events = list(
        client.responses.create(
            model="smollm2-135m-instruct",
            input="What does E4 mean?",
            stream=True,
            tools=[{"type": "file_search", "vector_store_ids": [vs_id], "max_num_results": 2}],
        )
    )
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert deltas == final.output_text == "See the second passage [2]."
    assert final.output[-1].content[0].annotations[0].type == "file_citation"
    assert final.usage.input_tokens == len(engine.prompts[-1][0])


def test_without_tools_it_is_plain_generation(served):
    engine, client, _, _, _ = served
    resp = client.responses.create(
        model="smollm2-135m-instruct",
        instructions="Be terse.",
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "input_text", "text": "And now?"}]},
        ],
    )
    (message,) = resp.output
    assert message.type == "message" and message.content[0].annotations == []
    assert engine.prompts[-1][1] == rendered(
        engine,
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "And now?"},
        ],
    )


def test_bad_tools_and_unknown_stores(served):
    client = served[1]
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="x", input="hi", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            model="x", input="hi", tools=[{"type": "file_search", "vector_store_ids": ["vs_nope"]}]
        )


def test_real_model_answers_from_the_manual(served_real):
    client, vs_id, manual_id, _ = served_real
    resp = client.responses.create(
        model="smollm2-135m-instruct",
        input="What does error E4 mean?",
        tools=[{"type": "file_search", "vector_store_ids": [vs_id], "max_num_results": 2}],
        include=["file_search_call.results"],
        max_output_tokens=40,
        temperature=0,
    )
    call, message = resp.output
    assert any("E4 means the boiler" in r.text for r in call.results)
    # The 135M model answers from the passage it was given (its own knowledge has no E4).
    assert "boiler" in resp.output_text.lower(), resp.output_text
    assert message.content[0].annotations[0].file_id == manual_id
    assert 0 < resp.usage.output_tokens <= 40
