"""Acceptance on the embedded SmolLM2-135M-Instruct, through the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import run_server, sdk
from tunelab.models.registry import SMOLLM2
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[openai.OpenAI]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("real") / "data", cache_dir=model_cache)
    with run_server(settings) as url:
        yield sdk(url)


@pytest.fixture(scope="module")
def tokenizer(model_cache: Path) -> Any:
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import Registry

    return load_tokenizer(Registry.load().get(SMOLLM2), model_cache)


def test_factual_question_at_temperature_zero_with_exact_usage(
    client: openai.OpenAI, tokenizer: Any
) -> None:
    r = client.chat.completions.create(model=SMOLLM2, messages=FRANCE, temperature=0, max_tokens=20)
    answer = r.choices[0].message.content or ""
    assert "Paris" in answer
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == len(
        tokenizer.apply_chat_template(FRANCE, add_generation_prompt=True)["input_ids"]
    )
    # the generated tokens: the answer's tokens plus the end-of-turn token that stopped it
    assert (
        r.usage.completion_tokens
        == len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    )


def test_n_gives_three_choices_and_seed_reproduces(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": SMOLLM2, "messages": FRANCE, "temperature": 1.0, "max_tokens": 8}
    first = client.chat.completions.create(**kw, n=3, seed=7)
    again = client.chat.completions.create(**kw, n=3, seed=7)
    assert len(first.choices) == 3 and [c.index for c in first.choices] == [0, 1, 2]
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]
    assert all(c.message.content for c in first.choices)


def test_stop_newline_returns_one_line(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "List three fruits, one per line."}]
    r = client.chat.completions.create(
        model=SMOLLM2, messages=messages, temperature=0, max_tokens=40, stop=["\n"]
    )
    text = r.choices[0].message.content or ""
    assert r.choices[0].finish_reason == "stop"
    assert text.strip() and "\n" not in text


def test_streaming_assembles_to_the_non_streaming_text(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": SMOLLM2, "messages": FRANCE, "temperature": 0, "max_tokens": 16}
    full = client.chat.completions.create(**kw).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(**kw, stream=True)
    )
    assert streamed == full


def test_chinese_streams_without_broken_characters(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": "把“早上好”翻译成中文，并加一个表情符号 😊"}],
        "temperature": 0,
        "max_tokens": 16,
    }
    full = client.chat.completions.create(**kw).choices[0].message.content or ""
    deltas = [
        c.choices[0].delta.content or "" for c in client.chat.completions.create(**kw, stream=True)
    ]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == full
