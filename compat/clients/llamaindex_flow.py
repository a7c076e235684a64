"""LlamaIndex: OpenAI / OpenAILike LLMs, OpenAIEmbedding, an index and a query.

Only the environment's OPENAI_API_BASE / OPENAI_API_KEY point at tunelab.
"""

from __future__ import annotations

import os
from typing import Literal

from _report import Flow, expect
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel

flow = Flow("llama-index")
DOCS = [
    "The Zephyr-9 battery lasts about forty minutes on one charge.",
    "Hold the power button for ten seconds to reset the Zephyr-9.",
    "The dust bin sits under the top lid, behind the handle.",
]


@flow.step("chat", "OpenAI(model='gpt-3.5-turbo').chat / complete")
def _() -> str:
    llm = OpenAI(model="gpt-3.5-turbo", max_tokens=8)
    r = llm.chat([ChatMessage(role="user", content="Say hello")])
    expect(isinstance(r.message.content, str), "no content")
    return repr(llm.complete("Say hello").text)


@flow.step("stream", "OpenAI().stream_complete")
def _() -> str:
    parts = [r.delta for r in OpenAI(model="gpt-4o-mini", max_tokens=8).stream_complete("Count")]
    expect(len(parts) >= 2, f"{len(parts)} chunks")
    return repr("".join(p or "" for p in parts))


@flow.step("chat", "OpenAILike(model=..., is_chat_model=True).complete")
def _() -> str:
    llm = OpenAILike(
        model="smollm2-135m-instruct",
        api_base=os.environ["OPENAI_API_BASE"],
        api_key=os.environ["OPENAI_API_KEY"],
        is_chat_model=True,
        max_tokens=8,
    )
    return repr(llm.complete("Say hello").text)


@flow.step("embeddings", "OpenAIEmbedding().get_text_embedding_batch")
def _() -> str:
    vecs = OpenAIEmbedding().get_text_embedding_batch(DOCS)
    expect(len(vecs) == len(DOCS) and len(vecs[0]) > 0, "no vectors")
    return f"{len(vecs[0])} dims"


@flow.step("vector stores", "VectorStoreIndex.from_documents(...).as_query_engine().query")
def _() -> str:
    Settings.llm = OpenAI(model="gpt-3.5-turbo", max_tokens=24)
    Settings.embed_model = OpenAIEmbedding()
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])
    nodes = index.as_retriever(similarity_top_k=1).retrieve("How do I reset it?")
    expect("reset" in nodes[0].get_content(), f"top node {nodes[0].get_content()!r}")
    answer = index.as_query_engine(similarity_top_k=2).query("How long does the battery last?")
    expect(len(answer.source_nodes) == 2, "no sources")
    return repr(str(answer))


class City(BaseModel):
    """A city and the country it is in."""

    city: str
    country: Literal["France", "Italy", "Spain", "Germany"]


def _tool_llm() -> OpenAILike:
    return OpenAILike(
        model="smollm2-135m-instruct",
        api_base=os.environ["OPENAI_API_BASE"],
        api_key=os.environ["OPENAI_API_KEY"],
        is_chat_model=True,
        is_function_calling_model=True,
        temperature=0,
        max_tokens=40,
    )


@flow.step("structured", "OpenAILike(is_function_calling_model=True).structured_predict(City)")
def _() -> str:
    city = _tool_llm().structured_predict(
        City, PromptTemplate("Which city is {landmark} in?"), landmark="the Eiffel Tower"
    )
    expect(isinstance(city, City) and "Paris" in city.city, f"got {city!r}")
    return repr(city)


@flow.step("structured", "OpenAILike().as_structured_llm(City).complete")
def _() -> str:
    raw = _tool_llm().as_structured_llm(City).complete("Which city is the Colosseum in?").raw
    expect(isinstance(raw, City), f"got {raw!r}")
    return repr(raw)
