"""Acceptance: structured outputs and tool calls on the embedded SmolLM2, through
unmodified clients: the openai SDK (`.parse()` with a pydantic model, a streamed
tool call), LangChain (`with_structured_output` both ways, `bind_tools`) and
LlamaIndex (structured prediction).

LangChain and LlamaIndex each run in a virtualenv of their own (their openai
requirements differ), built once from tests/clients/NAME.txt and cached under
.tunelab/client-venvs, keyed by the requirements' hash and the Python version.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tests.support import run_server, sdk
from tunelab.models.registry import SMOLLM2
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = Path(__file__).resolve().parent / "clients"
COUNTRIES = ("France", "Italy", "Spain", "Germany")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


class City(BaseModel):
    city: str
    country: Literal["France", "Italy", "Spain", "Germany"]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("clients") / "data", cache_dir=model_cache)
    with run_server(settings) as base:
        yield base


def test_sdk_parse_fills_a_pydantic_model(url: str) -> None:
    r = sdk(url).chat.completions.parse(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "Which city is the Eiffel Tower in?"}],
        response_format=City,
        temperature=0,
        max_tokens=60,
    )
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.country in COUNTRIES
    assert "Paris" in parsed.city


def test_sdk_tool_call_streams_and_reassembles_like_the_plain_one(url: str) -> None:
    client = sdk(url)
    kw: dict[str, Any] = {
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 60,
    }
    plain = client.chat.completions.create(**kw).choices[0]
    with client.chat.completions.stream(**kw) as stream:
        final = stream.get_final_completion().choices[0]
    assert plain.finish_reason == final.finish_reason == "tool_calls"
    got = [(c.function.name, c.function.arguments) for c in final.message.tool_calls or []]
    assert got == [(c.function.name, c.function.arguments) for c in plain.message.tool_calls or []]
    args = json.loads(got[0][1])
    assert got[0][0] == "get_weather" and args["unit"] in ("celsius", "fahrenheit")
    assert "Paris" in args["city"]
    # strict tools: the SDK's stream helper parses the arguments too
    assert final.message.tool_calls[0].function.parsed_arguments == args  # type: ignore[index, union-attr]


def client_python(name: str) -> Path:
    """A client's virtualenv (built on first use; rebuilt when its requirements change)."""
    reqs = CLIENTS / f"{name}.txt"
    key = hashlib.sha256(reqs.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = ROOT / ".tunelab" / "client-venvs" / f"{name}-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(reqs)],
            check=True,
            timeout=1800,
        )
        (venv / ".ready").touch()
    return python


def run_client(url: str, name: str, script: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": url + "/v1",
        "OPENAI_API_KEY": "sk-client-test",
        "CLIENT_MODEL": SMOLLM2,
    }
    done = subprocess.run(
        [str(client_python(name)), str(CLIENTS / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_langchain_structured_output_and_bind_tools_round_trip(url: str) -> None:
    out = run_client(url, "langchain", "langchain_tools.py")
    for method in ("json_schema", "function_calling"):
        assert isinstance(out[method], dict), out[method]
        assert out[method]["country"] in COUNTRIES and "Paris" in out[method]["city"]
    [call] = out["tool_calls"]
    assert call["name"] == "get_weather" and call["args"]["unit"] in ("celsius", "fahrenheit")
    assert isinstance(out["after_tool"], str) and out["after_tool"]


@pytest.mark.slow
def test_llamaindex_structured_prediction(url: str) -> None:
    out = run_client(url, "llamaindex", "llamaindex_structured.py")
    for key in ("structured_predict", "as_structured_llm"):
        assert out[key]["country"] in COUNTRIES, out
    assert "Paris" in out["structured_predict"]["city"]
