"""Structured outputs and tool calls through the official openai SDK, on the tiny model.

The tiny model is random, so what it says is gibberish: these tests check what
the grammar guarantees whatever the model prefers (the output parses and fits
the schema, calls name offered functions with valid arguments), the wire shapes
(message, stream deltas, finish reasons) and the request checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from tests.support import register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.settings import Settings

pytestmark = pytest.mark.api

ASK = [{"role": "user", "content": "What is the weather in Paris? Answer in json."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}, "days": {"enum": [1, 2]}},
            "required": ["unit", "days"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["utc", "local"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


class Verdict(BaseModel):
    answer: Literal["yes", "no"]
    sure: bool


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Iterator[openai.OpenAI]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("tools") / "data", cache_dir=model_cache)
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as url:
        yield sdk(url)


def _weather_args(arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    assert args["unit"] in ("celsius", "fahrenheit") and args["days"] in (1, 2)
    assert set(args) == {"unit", "days"}
    return args


def test_parse_with_a_pydantic_model_gives_a_valid_object(client: openai.OpenAI) -> None:
    for seed in (1, 2, 3):
        r = client.chat.completions.parse(
            model=TINY_CHAT, messages=ASK, response_format=Verdict, seed=seed, max_tokens=40
        )
        parsed = r.choices[0].message.parsed
        assert isinstance(parsed, Verdict)
        assert r.choices[0].message.content == json.dumps(parsed.model_dump())
        assert r.choices[0].finish_reason == "stop" and r.choices[0].message.refusal is None


def test_json_object_needs_the_word_json_and_answers_an_object(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=TINY_CHAT,
            messages=[{"role": "user", "content": "Hello"}],
            response_format={"type": "json_object"},
        )
    assert e.value.body["param"] == "messages" and "json" in e.value.body["message"]  # type: ignore[index]
    r = client.chat.completions.create(
        model=TINY_CHAT, messages=ASK, response_format={"type": "json_object"}, max_tokens=300
    )
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
    else:
        assert (r.choices[0].message.content or "").startswith("{")


def test_unsupported_schema_keyword_is_a_400_naming_it(client: openai.OpenAI) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "if": {"type": "object"}}},
    }
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY_CHAT, messages=ASK, response_format=fmt)  # type: ignore[arg-type]
    body: dict[str, Any] = e.value.body  # type: ignore[assignment]
    assert body["param"] == "response_format.json_schema.schema" and '"if"' in body["message"]


def test_required_tool_call_has_valid_arguments(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=TINY_CHAT,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice="required",
        max_tokens=80,
        temperature=0,  # sampled, the random tiny model can run past max_tokens
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert calls and all(c.type == "function" for c in calls)
    for call in calls:
        assert call.id.startswith("call_") and len(call.id) == 29
        if call.function.name == "get_weather":
            _weather_args(call.function.arguments)
        else:
            assert call.function.name == "get_time"
            assert json.loads(call.function.arguments)["zone"] in ("utc", "local")
    # identical calls are never repeated
    keys = [(c.function.name, c.function.arguments) for c in calls]
    assert len(keys) == len(set(keys))


def test_named_tool_choice_and_none(client: openai.OpenAI) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    r = client.chat.completions.create(
        model=TINY_CHAT, messages=ASK, tools=[WEATHER, TIME], tool_choice=named, max_tokens=60
    )
    assert [c.function.name for c in r.choices[0].message.tool_calls or []][:1] == ["get_time"]
    r = client.chat.completions.create(
        model=TINY_CHAT, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=10
    )
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content is not None


def test_streamed_tool_call_reassembles_like_the_non_streamed_one(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {
        "model": TINY_CHAT,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "temperature": 0,
        "max_tokens": 60,
    }
    plain = client.chat.completions.create(**kw).choices[0].message.tool_calls or []
    chunks = list(client.chat.completions.create(**kw, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    first = deltas[0].tool_calls[0]  # type: ignore[index]
    assert deltas[0].role == "assistant"
    assert (first.index, first.type, first.function.name, first.function.arguments) == (  # type: ignore[union-attr]
        0,
        "function",
        "get_weather",
        "",
    )
    pieces = [d.tool_calls[0] for d in deltas[1:] if d.tool_calls]
    assert pieces and all(p.id is None and p.type is None and p.index == 0 for p in pieces)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices[0].delta.model_dump(exclude_none=True) == {}
    with client.chat.completions.stream(**kw) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls or []
    assert len(streamed) == len(plain) == 1
    assert streamed[0].function.arguments == plain[0].function.arguments
    assert "".join(p.function.arguments or "" for p in pieces) == plain[0].function.arguments  # type: ignore[union-attr]
    _weather_args(plain[0].function.arguments)


def test_legacy_functions_answer_with_function_call(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {
        "model": TINY_CHAT,
        "messages": ASK,
        "functions": [WEATHER["function"]],
        "function_call": {"name": "get_weather"},
        "temperature": 0,
        "max_tokens": 60,
    }
    r = client.chat.completions.create(**kw)
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "function_call" and message.tool_calls is None
    assert message.function_call is not None and message.function_call.name == "get_weather"
    _weather_args(message.function_call.arguments)
    chunks = list(client.chat.completions.create(**kw, stream=True))
    fcs = [
        c.choices[0].delta.function_call
        for c in chunks
        if c.choices and c.choices[0].delta.function_call
    ]
    assert fcs[0].name == "get_weather" and fcs[0].arguments == ""  # type: ignore[union-attr]
    assert "".join(f.arguments or "" for f in fcs) == message.function_call.arguments
    assert chunks[-1].choices[0].finish_reason == "function_call"


def test_tool_messages_in_the_conversation(client: openai.OpenAI) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"unit": "celsius", "days": 1}'},
    }
    convo = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C and sunny"},
    ]
    r = client.chat.completions.create(
        model=TINY_CHAT, messages=convo, tools=[WEATHER], tool_choice="none", max_tokens=5
    )
    assert r.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY_CHAT, messages=[*ASK, convo[2]], max_tokens=5)
    assert "must be a response to a preceeding message with 'tool_calls'" in str(e.value)
    assert e.value.body["param"] == "messages.[1].role"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=TINY_CHAT, messages=[*ASK, convo[1], *ASK], max_tokens=5
        )
    assert "did not have response messages: call_1" in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "functions": [WEATHER["function"]]}, "functions"),
    ],
)
def test_bad_tool_requests_name_the_field(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY_CHAT, messages=ASK, max_tokens=5, **kwargs)
    assert e.value.body["param"] == param  # type: ignore[index]
