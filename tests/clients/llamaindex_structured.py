"""LlamaIndex against tunelab, unmodified: structured prediction (through function
calling) and a structured LLM. Prints one JSON object of results."""

from __future__ import annotations

import json
import os
import sys
from typing import Literal

from llama_index.core.prompts import PromptTemplate
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel


class City(BaseModel):
    """A city and the country it is in."""

    city: str
    country: Literal["France", "Italy", "Spain", "Germany"]


llm = OpenAILike(
    model=os.environ["CLIENT_MODEL"],
    api_base=os.environ["OPENAI_BASE_URL"],
    api_key=os.environ["OPENAI_API_KEY"],
    is_chat_model=True,
    is_function_calling_model=True,
    temperature=0,
    max_tokens=60,
)
out: dict[str, object] = {}
predicted = llm.structured_predict(
    City, PromptTemplate("Which city is {landmark} in?"), landmark="the Eiffel Tower"
)
out["structured_predict"] = predicted.model_dump()
response = llm.as_structured_llm(City).complete("Which city is the Colosseum in?")
out["as_structured_llm"] = response.raw.model_dump()
json.dump(out, sys.stdout)
