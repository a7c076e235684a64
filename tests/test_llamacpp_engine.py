"""The embedded SmolLM2 served by llama.cpp (registry "engine": "llama.cpp"), through
the official openai SDK: plain requests run on llama.cpp, with tunelab's own prompt
and token counts; what llama.cpp can not do exactly runs on transformers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import register_models, run_server, sdk, wait_until
from tunelab.models.registry import SMOLLM2
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel

# At temperature 0 llama.cpp answers in English for this prompt; for the bare question
# it picks "L'..." (quantised weights: 0.14 against "The" 0.15 in fp32).
FRANCE = [
    {"role": "user", "content": "What is the capital of France? Answer in one English sentence."}
]
ON_LLAMA = f"{SMOLLM2}@llama.cpp"  # the llama.cpp engine's counters in stats()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("llamacpp") / "data",
        cache_dir=model_cache,
        embedded_worker=False,
    )
    register_models(settings, [{"id": SMOLLM2, "engine": "llama.cpp"}])
    rt = build_runtime(settings)
    yield rt


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[openai.OpenAI]:
    with run_server(runtime) as url:
        yield sdk(url)


@pytest.fixture(scope="module")
def tokenizer(model_cache: Path) -> Any:
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import Registry

    return load_tokenizer(Registry.load().get(SMOLLM2), model_cache)


def counters(runtime: Runtime) -> dict[str, int]:
    return runtime.inference.engine.stats().get(ON_LLAMA, {})


def test_chat_runs_on_llama_cpp_with_tunelabs_prompt_and_counts(
    client: openai.OpenAI, runtime: Runtime, tokenizer: Any
) -> None:
    r = client.chat.completions.create(model=SMOLLM2, messages=FRANCE, temperature=0, max_tokens=20)
    answer = r.choices[0].message.content or ""
    assert "Paris" in answer
    assert r.choices[0].finish_reason == "stop"
    prompt = tokenizer.apply_chat_template(FRANCE, add_generation_prompt=True)["input_ids"]
    assert r.usage is not None and r.usage.prompt_tokens == len(prompt)
    # the answer's tokens plus the end-of-turn token, as the transformers engine counts
    assert (
        r.usage.completion_tokens
        == len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    )
    stats = counters(runtime)
    # llama.cpp read exactly those prompt tokens (any difference falls back to transformers)
    assert stats["requests"] >= 1 and stats["prefill_tokens"] >= len(prompt)
    assert stats.get("prompt_fallbacks", 0) == 0 and stats.get("routed_to_transformers", 0) == 0
    assert SMOLLM2 not in runtime.inference.engine.stats()  # transformers never loaded


def test_streaming_assembles_to_the_same_text_with_usage(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": SMOLLM2, "messages": FRANCE, "temperature": 0, "max_tokens": 10}
    full = client.chat.completions.create(**kw)
    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage == full.usage


def test_max_tokens_stop_and_n(client: openai.OpenAI) -> None:
    cut = client.chat.completions.create(
        model=SMOLLM2, messages=FRANCE, temperature=0, max_tokens=3
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 3
    fruits = [{"role": "user", "content": "List three fruits, one per line."}]
    line = client.chat.completions.create(
        model=SMOLLM2, messages=fruits, temperature=0, max_tokens=24, stop=["\n"]
    )
    text = line.choices[0].message.content or ""
    assert line.choices[0].finish_reason == "stop" and text.strip() and "\n" not in text
    two = client.chat.completions.create(
        model=SMOLLM2, messages=FRANCE, temperature=1.0, top_p=0.9, max_tokens=6, n=2
    )
    assert [c.index for c in two.choices] == [0, 1]
    assert all(c.message.content for c in two.choices)
    assert two.usage is not None and 2 <= two.usage.completion_tokens <= 12


def ended(runtime: Runtime) -> int:
    """Choices that ran to an end (stop or length) on llama.cpp."""
    c = counters(runtime)
    return c.get("finished_length", 0) + c.get("finished_stop", 0)


def test_a_closed_stream_stops_its_generation(client: openai.OpenAI, runtime: Runtime) -> None:
    before, finished = counters(runtime).get("cancelled", 0), ended(runtime)
    story = [{"role": "user", "content": "Tell me a very long story about a dragon."}]
    stream = client.chat.completions.create(
        model=SMOLLM2, messages=story, temperature=0, max_tokens=2000, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    wait_until(
        lambda: (
            counters(runtime).get("cancelled", 0) > before and counters(runtime)["running"] == 0
        ),
        timeout=30,
        what="the generation stopped and its llama.cpp copy free again",
    )
    assert ended(runtime) == finished  # it did not run on to an end


def test_json_schema_still_works_on_transformers(client: openai.OpenAI, runtime: Runtime) -> None:
    before = counters(runtime).get("routed_to_transformers", 0)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=SMOLLM2,
        messages=FRANCE,
        temperature=0,
        max_tokens=30,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    assert set(json.loads(r.choices[0].message.content or "")) == {"city"}
    assert counters(runtime)["routed_to_transformers"] == before + 1


def test_a_prompt_llama_cpp_would_read_differently_runs_on_transformers(
    client: openai.OpenAI, runtime: Runtime, tokenizer: Any
) -> None:
    # "H" + "ello" is not how "Hello" tokenizes: llama.cpp, given the text, would read
    # other tokens than these, so the request runs where these exact ids are read
    ids = [*tokenizer.encode("H", add_special_tokens=False)]
    ids += tokenizer.encode("ello, my name is", add_special_tokens=False)
    assert ids != tokenizer.encode("Hello, my name is", add_special_tokens=False)
    before = counters(runtime).get("prompt_fallbacks", 0)
    r = client.completions.create(model=SMOLLM2, prompt=ids, max_tokens=5, temperature=0)
    assert r.usage is not None and r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens >= 1 and r.choices[0].text
    assert counters(runtime)["prompt_fallbacks"] == before + 1
