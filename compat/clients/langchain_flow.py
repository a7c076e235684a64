"""LangChain with its defaults; only OPENAI_BASE_URL / OPENAI_API_KEY are set.

`OpenAIEmbeddings()` tokenizes with tiktoken (cl100k_base) and sends token
arrays; the server must decode them and give the vectors the text would get.
"""

from __future__ import annotations

from _report import Flow, cosine, expect
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI, OpenAI, OpenAIEmbeddings

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
