"""LangChain against tunelab, unmodified: with_structured_output (json_schema and
function_calling) and a bind_tools round trip. Only OPENAI_BASE_URL and
OPENAI_API_KEY point it at the server; prints one JSON object of results."""

from __future__ import annotations

import json
import os
import sys
from typing import Literal

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

MODEL = os.environ["CLIENT_MODEL"]


class City(BaseModel):
    """A city and the country it is in."""

    city: str
    country: Literal["France", "Italy", "Spain", "Germany"]


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """The current weather in a city."""
    return f"21 degrees {unit} and sunny in {city}"


llm = ChatOpenAI(model=MODEL, temperature=0, max_tokens=60)
out: dict[str, object] = {}
question = "Which city is the Eiffel Tower in?"
for method in ("json_schema", "function_calling"):
    parsed = llm.with_structured_output(City, method=method).invoke(question)
    out[method] = parsed.model_dump() if isinstance(parsed, City) else repr(parsed)

ask = HumanMessage("What is the weather in Paris, in celsius?")
with_tools = llm.bind_tools([get_weather], tool_choice="get_weather")
first = with_tools.invoke([ask])
out["tool_calls"] = first.tool_calls
call = first.tool_calls[0]
result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
second = llm.bind_tools([get_weather]).invoke([ask, first, result])
out["after_tool"] = second.content
json.dump(out, sys.stdout)
