"""Function tools and `text.format` in /v1/responses, through the SDK, on the tiny model."""

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

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["unit"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Verdict(BaseModel):
    answer: Literal["yes", "no"]


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Iterator[openai.OpenAI]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("resp") / "data", cache_dir=model_cache)
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as url:
        yield sdk(url)


def test_function_call_then_its_output_in_the_next_turn(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": TINY_CHAT, "tools": [WEATHER], "max_output_tokens": 40}
    # One call allowed: the grammar ends the answer after it, whatever the random model says.
    r = client.responses.create(
        input="Weather in Paris?", tool_choice="required", parallel_tool_calls=False, **kw
    )
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and r.status == "completed" and r.output_text == ""
    call = calls[0]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    assert json.loads(call.arguments)["unit"] in ("celsius", "fahrenheit")
    follow = client.responses.create(
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "21 C"},
        ],
        tool_choice="none",
        **kw,
    )
    assert follow.output[0].type == "message" and isinstance(follow.output_text, str)


def test_streamed_function_call_accumulates_in_the_sdk(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {
        "model": TINY_CHAT,
        "input": "Weather in Paris?",
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "temperature": 0,
        "max_output_tokens": 40,
    }
    plain = client.responses.create(**kw)
    with client.responses.stream(**kw) as stream:
        types = [e.type for e in stream]
        final = stream.get_final_response()
    assert types[:2] == ["response.created", "response.in_progress"]
    assert "response.function_call_arguments.delta" in types
    assert types[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    [streamed] = [o for o in final.output if o.type == "function_call"]
    [expected] = [o for o in plain.output if o.type == "function_call"]
    assert streamed.arguments == expected.arguments and streamed.name == "get_weather"


def test_text_format_json_schema_parses(client: openai.OpenAI) -> None:
    r = client.responses.parse(
        model=TINY_CHAT, input="Is water wet?", text_format=Verdict, max_output_tokens=30
    )
    assert isinstance(r.output_parsed, Verdict)
    assert json.loads(r.output_text) == r.output_parsed.model_dump()
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model=TINY_CHAT, input="Hello", text={"format": {"type": "json_object"}}
        )
    assert e.value.body["param"] == "text.format"  # type: ignore[index]
