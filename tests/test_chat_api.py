"""Chat and legacy completions through the official openai SDK, on the tiny model.

One server for the module (the tiny 2-layer model loads in well under a second);
outputs of a random model are gibberish, so tests compare runs with each other
(seeded sampling, greedy decoding) rather than with expected text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support import register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.settings import Settings

pytestmark = pytest.mark.api

HI = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Iterator[openai.OpenAI]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("chat") / "data", cache_dir=model_cache)
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as url:
        yield sdk(url)


@pytest.fixture(scope="module")
def tokenizer(tiny_chat_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_chat_dir))


def test_chat_completion_shape_and_exact_usage(client: openai.OpenAI, tokenizer) -> None:  # type: ignore[no-untyped-def]
    r = client.chat.completions.create(model=TINY_CHAT, messages=HI, max_tokens=7, seed=1)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == TINY_CHAT
    (choice,) = r.choices
    assert (
        choice.index == 0
        and choice.message.role == "assistant"
        and choice.finish_reason == "length"
    )
    prompt = tokenizer.apply_chat_template(HI, add_generation_prompt=True)["input_ids"]
    assert r.usage.prompt_tokens == len(prompt)
    assert r.usage.completion_tokens == 7
    assert r.usage.total_tokens == len(prompt) + 7


def test_stream_matches_non_stream_and_follows_the_protocol(client: openai.OpenAI) -> None:
    kw = {"model": TINY_CHAT, "messages": HI, "max_tokens": 12, "seed": 5, "temperature": 1.0}
    full = client.chat.completions.create(**kw)
    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-2].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    # That no delta splits a character is checked where it can fail: the detokenizer's
    # unit tests (test_inference_textstream.py) and real Chinese text streamed by the
    # real model (test_chat_realmodel.py); a random tiny model's bytes prove nothing.


def test_seed_reproduces_and_n_gives_distinct_choices(client: openai.OpenAI) -> None:
    kw = {"model": TINY_CHAT, "messages": HI, "max_tokens": 8, "temperature": 1.0}
    a = client.chat.completions.create(**kw, seed=42, n=3)
    b = client.chat.completions.create(**kw, seed=42, n=3)
    c = client.chat.completions.create(**kw, seed=43, n=3)
    texts = [ch.message.content for ch in a.choices]
    assert [ch.index for ch in a.choices] == [0, 1, 2]
    assert texts == [ch.message.content for ch in b.choices]
    assert texts != [ch.message.content for ch in c.choices]
    assert len(set(texts)) == 3
    assert a.usage.completion_tokens == 24


def test_stop_sequence_cuts_before_the_stop_text(client: openai.OpenAI) -> None:
    kw = {"model": TINY_CHAT, "messages": HI, "max_tokens": 20, "seed": 9}
    text = client.chat.completions.create(**kw).choices[0].message.content
    stop = text[6:10]  # may well span a token boundary
    r = client.chat.completions.create(**kw, stop=[stop, "never-appears"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[: text.index(stop)]
    streamed = client.chat.completions.create(**kw, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == text[: text.index(stop)]


def test_logprobs_and_top_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=TINY_CHAT, messages=HI, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 5
    for entry in content:
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        # greedy: the chosen token is the most likely one
        assert (
            entry.token == entry.top_logprobs[0].token
            and entry.bytes == entry.top_logprobs[0].bytes
        )


def test_penalties_change_greedy_output(client: openai.OpenAI) -> None:
    kw = {"model": TINY_CHAT, "messages": HI, "max_tokens": 12, "temperature": 0}
    plain = client.chat.completions.create(**kw).choices[0].message.content
    penalised = (
        client.chat.completions.create(**kw, frequency_penalty=2.0).choices[0].message.content
    )
    assert plain != penalised


def test_developer_role_and_text_parts(client: openai.OpenAI) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "something."}],
        },
    ]
    r = client.chat.completions.create(
        model=TINY_CHAT, messages=messages, max_tokens=3, temperature=0
    )
    assert r.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
            "response_format.json_schema.name",
        ),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        ({"messages": [{"role": "user", "content": "word " * 600}]}, "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            "messages[0].content",
        ),
        ({"messages": []}, "messages"),
    ],
)
def test_bad_parameters_name_the_param(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    call = {"model": TINY_CHAT, "messages": HI, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**call)
    assert e.value.param == param
    assert param.split("[")[0] in e.value.message or "context length" in e.value.message


def test_unknown_and_embedding_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=HI)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e2:
        client.chat.completions.create(model="all-minilm-l6-v2", messages=HI)
    assert "not a chat model" in e2.value.message and e2.value.param == "model"


def test_legacy_completions_prompts_n_echo_logprobs(client: openai.OpenAI, tokenizer) -> None:  # type: ignore[no-untyped-def]
    r = client.completions.create(
        model=TINY_CHAT,
        prompt=["Once upon", "A time"],
        n=2,
        max_tokens=4,
        seed=3,
        echo=True,
        logprobs=2,
    )
    assert r.id.startswith("cmpl-") and r.object == "text_completion"
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text.startswith("Once upon") and r.choices[2].text.startswith("A time")
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == 4
    assert all(len(t) <= 3 for t in lp.top_logprobs) and lp.text_offset[0] == len("Once upon")
    prompt_tokens = len(tokenizer("Once upon")["input_ids"]) + len(tokenizer("A time")["input_ids"])
    assert r.usage.prompt_tokens == prompt_tokens and r.usage.completion_tokens == 16

    ids = tokenizer("Once upon")["input_ids"]
    by_ids = client.completions.create(model=TINY_CHAT, prompt=ids, max_tokens=4, seed=3)
    by_text = client.completions.create(model=TINY_CHAT, prompt="Once upon", max_tokens=4, seed=3)
    assert (
        by_ids.choices[0].text == by_text.choices[0].text == r.choices[0].text[len("Once upon") :]
    )

    streamed = client.completions.create(
        model=TINY_CHAT, prompt="Once upon", max_tokens=4, seed=3, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == by_text.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_legacy_completions_refuses_suffix(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=TINY_CHAT, prompt="def f():", suffix="return 1")
    assert e.value.param == "suffix"


def test_operator_default_max_tokens_caps_only_requests_that_name_none(
    tmp_path: Path, model_cache: Path, tiny_chat_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", cache_dir=model_cache, default_max_tokens=9)
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as url:
        capped = sdk(url).chat.completions.create(model=TINY_CHAT, messages=HI, seed=1)
        asked = sdk(url).chat.completions.create(
            model=TINY_CHAT, messages=HI, seed=1, max_tokens=14
        )
        legacy = sdk(url).completions.create(model=TINY_CHAT, prompt="Say", seed=1)
    assert capped.usage.completion_tokens <= 9
    assert capped.choices[0].finish_reason == "length" or capped.usage.completion_tokens < 9
    # the same seeded sampling, asked for more: the cap was a default, not a limit
    assert asked.usage.completion_tokens > 9
    assert asked.choices[0].message.content.startswith(capped.choices[0].message.content)
    # /v1/completions has its own documented default (16), which the cap leaves alone
    assert legacy.usage.completion_tokens == 16
