"""The embedded SmolLM2 served by llama.cpp (registry "engine": "llama.cpp"), through
the official openai SDK: every request for the base runs on llama.cpp, with tunelab's
own prompt ids, token counts, sampler and grammars; transformers never loads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
    assert stats["prefill_tokens"] >= len(prompt) and stats["decode_calls"] >= 1
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
        what="the generation stopped and its llama.cpp sequence freed",
    )
    assert ended(runtime) == finished  # it did not run on to an end


def test_structured_output_and_sampling_options_run_on_llama_cpp(
    client: openai.OpenAI, runtime: Runtime, tokenizer: Any
) -> None:
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
    # a seed reproduces a sampled answer; logprobs come with it
    kw: dict[str, Any] = {"model": SMOLLM2, "messages": FRANCE, "max_tokens": 12}
    one, two = (
        client.chat.completions.create(**kw, temperature=1.2, seed=11, logprobs=True)
        for _ in range(2)
    )
    assert one.choices[0].message.content == two.choices[0].message.content
    lp = one.choices[0].logprobs
    assert lp is not None and lp.content and all(t.logprob <= 0 for t in lp.content)
    # logit_bias bans the greedy answer's first token
    plain = client.chat.completions.create(**kw, temperature=0)
    first = tokenizer.encode(plain.choices[0].message.content or "", add_special_tokens=False)[0]
    biased = client.chat.completions.create(
        **kw, temperature=0, logit_bias={str(first): -100}, logprobs=True
    )
    assert biased.choices[0].logprobs is not None
    chosen = biased.choices[0].logprobs.content or []
    assert chosen and tokenizer.encode(chosen[0].token, add_special_tokens=False)[0] != first
    assert SMOLLM2 not in runtime.inference.engine.stats()  # transformers never loaded


def test_the_exact_prompt_ids_are_read(
    client: openai.OpenAI, runtime: Runtime, tokenizer: Any
) -> None:
    # "H" + "ello" is not how "Hello" tokenizes: llama.cpp reads these ids as they are
    ids = [*tokenizer.encode("H", add_special_tokens=False)]
    ids += tokenizer.encode("ello, my name is", add_special_tokens=False)
    assert ids != tokenizer.encode("Hello, my name is", add_special_tokens=False)
    before = counters(runtime)["prefill_tokens"]
    r = client.completions.create(model=SMOLLM2, prompt=ids, max_tokens=5, temperature=0)
    assert r.usage is not None and r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens >= 1 and r.choices[0].text
    assert counters(runtime)["prefill_tokens"] == before + len(ids)


def test_concurrent_requests_share_decode_steps(client: openai.OpenAI, runtime: Runtime) -> None:
    before = counters(runtime)
    asks = [f"Count from {i} to {i + 30}, separated by spaces." for i in range(4)]

    def ask(text: str) -> int:
        r = client.chat.completions.create(
            model=SMOLLM2,
            messages=[{"role": "user", "content": text}],
            temperature=0,
            max_tokens=24,
        )
        assert r.usage is not None
        return r.usage.completion_tokens

    with ThreadPoolExecutor(4) as pool:
        generated = sum(pool.map(ask, asks))
    after = counters(runtime)
    steps = after["decode_steps"] - before["decode_steps"]
    # one at a time would take a step per token after the first of each request
    assert steps < generated - len(asks)


def test_a_lora_fine_tune_runs_on_llama_cpp(
    client: openai.OpenAI, runtime: Runtime, model_cache: Path, tmp_path_factory: Any
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from tunelab.models.loading import load_causal_lm
    from tunelab.models.registry import Registry

    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False)
    model = get_peft_model(load_causal_lm(Registry.load().get(SMOLLM2), model_cache), config)
    path = tmp_path_factory.mktemp("ft") / "adapter"
    model.save_pretrained(str(path))
    ft = f"ft:{SMOLLM2}:default:llama:abc123"
    runtime.catalog.register_fine_tuned(
        project="default", model_id=ft, base_model=SMOLLM2, path=path, kind="lora"
    )
    kw: dict[str, Any] = {"messages": FRANCE, "temperature": 0, "max_tokens": 12}
    base = client.chat.completions.create(model=SMOLLM2, **kw).choices[0].message.content
    tuned = client.chat.completions.create(model=ft, **kw).choices[0].message.content
    assert tuned and tuned != base  # the adapter changes what the model says
    stats = counters(runtime)
    assert stats["adapter_loads"] == 1 and stats["routed_to_transformers"] == 0
    assert SMOLLM2 not in runtime.inference.engine.stats()  # transformers never loaded
