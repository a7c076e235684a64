"""LangChain with its defaults; only OPENAI_BASE_URL / OPENAI_API_KEY are set.

`OpenAIEmbeddings()` tokenizes with tiktoken (cl100k_base) and sends token
arrays; the server must decode them and give the vectors the text would get.
"""

from __future__ import annotations

from typing import Literal

from _report import Flow, cosine, expect
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI, OpenAI, OpenAIEmbeddings
from pydantic import BaseModel

flow = Flow("langchain-openai")
DOCS = [
    "The Zephyr-9 battery lasts about forty minutes on one charge.",
    "Hold the power button for ten seconds to reset the Zephyr-9.",
    "The dust bin sits under the top lid, behind the handle.",
]


@flow.step("chat", "ChatOpenAI(model='gpt-4o-mini').invoke")
def _() -> str:
    msg = ChatOpenAI(model="gpt-4o-mini", max_tokens=8).invoke("Say hello")
    expect(isinstance(msg.content, str), "no content")
    return repr(msg.content)


@flow.step("stream", "ChatOpenAI().stream")
def _() -> str:
    parts = [c.content for c in ChatOpenAI(max_tokens=8).stream("Count to three")]
    expect(len(parts) >= 2, f"{len(parts)} chunks")
    return repr("".join(parts))


@flow.step("chat", "prompt | ChatOpenAI() | StrOutputParser()")
def _() -> str:
    chain = (
        ChatPromptTemplate.from_messages(
            [("system", "You answer in one word."), ("user", "{question}")]
        )
        | ChatOpenAI(max_tokens=6)
        | StrOutputParser()
    )
    return repr(chain.invoke({"question": "What colour is the sky?"}))


@flow.step("completions", "OpenAI(model='gpt-3.5-turbo-instruct').invoke")
def _() -> str:
    return repr(OpenAI(model="gpt-3.5-turbo-instruct", max_tokens=6).invoke("Say this is a test"))


@flow.step("embeddings", "OpenAIEmbeddings() (token arrays) == text path")
def _() -> str:
    default = OpenAIEmbeddings()  # text-embedding-ada-002, tiktoken cl100k ids
    text_path = OpenAIEmbeddings(check_embedding_ctx_length=False)  # sends the text
    q = "How long does the battery last?"
    sims = [cosine(default.embed_query(q), text_path.embed_query(q))]
    sims += [
        cosine(a, b)
        for a, b in zip(default.embed_documents(DOCS), text_path.embed_documents(DOCS), strict=True)
    ]
    expect(min(sims) > 0.999, f"cosine to the text path {min(sims):.4f}")
    return f"min cosine {min(sims):.5f}"


@flow.step("embeddings", "OpenAIEmbeddings(model='text-embedding-3-small')")
def _() -> str:
    v = OpenAIEmbeddings(model="text-embedding-3-small").embed_query("hello")
    return f"{len(v)} dims"


@flow.step("vector stores", "InMemoryVectorStore.from_texts(..., OpenAIEmbeddings())")
def _() -> str:
    store = InMemoryVectorStore.from_texts(DOCS, OpenAIEmbeddings())
    hit = store.similarity_search("how do I reset it", k=1)[0].page_content
    expect("reset" in hit, f"top hit {hit!r}")
    return repr(hit)


class City(BaseModel):
    """A city and the country it is in."""

    city: str
    country: Literal["France", "Italy", "Spain", "Germany"]


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """The current weather in a city."""
    return f"21 degrees {unit} and sunny in {city}"


for _method in ("json_schema", "function_calling"):

    @flow.step("structured", f"ChatOpenAI().with_structured_output(City, method={_method!r})")
    def _(method: str = _method) -> str:
        llm = ChatOpenAI(model="gpt-4o-mini", temperature=0, max_tokens=40)
        city = llm.with_structured_output(City, method=method).invoke(  # type: ignore[arg-type]
            "Which city is the Eiffel Tower in?"
        )
        expect(isinstance(city, City), f"got {city!r}")
        expect("Paris" in city.city, f"city {city.city!r}")  # type: ignore[union-attr]
        return repr(city)


@flow.step("tools", "ChatOpenAI().bind_tools([get_weather]) -> ToolMessage -> answer")
def _() -> str:
    llm = ChatOpenAI(model="gpt-4o-mini", temperature=0, max_tokens=80)
    ask = HumanMessage("What is the weather in Paris, in celsius?")
    first = llm.bind_tools([get_weather], tool_choice="get_weather").invoke([ask])
    calls = first.tool_calls  # type: ignore[attr-defined]
    expect(len(calls) == 1, f"tool_calls {calls}, invalid {first.invalid_tool_calls}")  # type: ignore[attr-defined]
    call = calls[0]
    expect(call["name"] == "get_weather", f"call {call}")
    expect(call["args"]["unit"] in ("celsius", "fahrenheit"), f"args {call['args']}")
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    second = llm.bind_tools([get_weather]).invoke([ask, first, result])
    expect(isinstance(second.content, str) and bool(second.content), f"answer {second!r}")
    return repr(second.content)
