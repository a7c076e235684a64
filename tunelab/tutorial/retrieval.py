"""Steps 5-6: embeddings and a similarity matrix; a vector store built from the product
manual, searched, and questions answered from it with citations."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from tunelab.tutorial.session import Session, StepUnavailable, needs

SENTENCES = [
    "How do I reset the router?",
    "路由器怎么恢复出厂设置？",
    "My package has not arrived yet",
    "快递一直没有送到",
    "The best pizza in town",
]
MANUAL_FILES = ["manual/router_manual.md", "manual/router_manual.pdf", "manual/router_manual_zh.md"]
# Small chunks (about a paragraph): retrieval is more precise than with whole sections,
# and two of them keep a grounded prompt near 300 tokens, which a 135M model on a CPU
# trains on quickly (step 7). Measured on the manual: with 100-token chunks and two
# passages, 14 of the 15 held-out questions get their key fact; with 200-token chunks, 12.
CHUNKING = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}}
PASSAGES = 2  # passages put into a prompt, here and in step 7 (at training and at answer time)
QUESTIONS = [
    "What does a blinking purple light mean?",
    "How do I restore the factory settings?",
    "保修期是多久？",
]


def step_embeddings(session: Session) -> None:
    session.title(5, "embeddings: which sentences mean the same thing?")
    quoted = " ".join(f'"{s}"' for s in SENTENCES[:3])
    session.show(
        f"tunelab embed {quoted}",
        f"""
import numpy as np
r = client.embeddings.create(model="{session.embedding_model}", input={SENTENCES[:3]!r})
v = np.array([d.embedding for d in r.data])   # already L2-normalised
print(v @ v.T)                               # cosine similarity matrix
""",
    )
    import numpy as np

    r = session.client.embeddings.create(model=session.embedding_model, input=SENTENCES)
    v = np.array([d.embedding for d in r.data], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sim = v @ v.T
    table = Table(
        title=f"cosine similarity ({session.embedding_model}, {v.shape[1]} dimensions, "
        f"{r.usage.prompt_tokens} tokens)"
    )
    table.add_column("")
    for i in range(len(SENTENCES)):
        table.add_column(f"[{i}]", justify="right")
    for i, s in enumerate(SENTENCES):
        table.add_row(
            f"[{i}] {s}",
            *(
                f"[bold]{x:.2f}[/bold]" if i != j and x > 0.5 else f"{x:.2f}"
                for j, x in enumerate(sim[i])
            ),
        )
    session.console.print(table)
    session.results["similarity"] = {
        "reset en/zh": round(float(sim[0, 1]), 2),
        "reset vs pizza": round(float(sim[0, 4]), 2),
    }


def build_store(session: Session, name: str = "lumen-r7-manual") -> str:
    """Upload the manual (md, pdf, Chinese md) and index it in a new vector store."""
    client = session.client
    file_ids = [session.upload(session.example(p), purpose="assistants").id for p in MANUAL_FILES]
    with needs("vector stores (/v1/vector_stores)"):
        store = client.vector_stores.create(
            name=name, file_ids=file_ids, chunking_strategy=CHUNKING
        )
    session.track("vector_stores", store.id)
    deadline = time.monotonic() + 300
    while store.status == "in_progress" or store.file_counts.in_progress:
        if time.monotonic() > deadline:
            raise StepUnavailable(f"vector store {store.id} was still indexing after 300 s")
        time.sleep(0.5)
        store = client.vector_stores.retrieve(store.id)
    if store.file_counts.failed:
        failed = [f for f in client.vector_stores.files.list(store.id) if f.status == "failed"]
        raise StepUnavailable(
            "indexing failed: " + "; ".join(f"{f.id}: {f.last_error.message}" for f in failed)
        )
    session.console.print(
        f"vector store [bold]{store.id}[/bold]: {store.file_counts.completed} files indexed, "
        f"{store.usage_bytes} bytes"
    )
    return str(store.id)


def step_vector_store(session: Session) -> None:
    session.title(6, "a vector store from the product manual, and search")
    session.show(
        "tunelab stores create lumen-r7-manual examples/manual/router_manual.md "
        "examples/manual/router_manual.pdf examples/manual/router_manual_zh.md\n"
        'tunelab stores search <store id> "the light is blinking purple"',
        """
paths = ["examples/manual/router_manual.md", "examples/manual/router_manual.pdf",
         "examples/manual/router_manual_zh.md"]
files = [client.files.create(file=open(p, "rb"), purpose="assistants") for p in paths]
store = client.vector_stores.create(
    name="lumen-r7-manual", file_ids=[f.id for f in files],
    chunking_strategy={"type": "static",
                       "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}},
)
while store.status == "in_progress":          # indexing runs in the background
    store = client.vector_stores.retrieve(store.id)
for hit in client.vector_stores.search(store.id, query="the light is blinking purple",
                                       max_num_results=3):
    print(round(hit.score, 3), hit.filename, hit.content[0].text[:80])
""",
    )
    store_id = build_store(session)
    session.state["store_id"] = store_id
    hits = list(
        session.client.vector_stores.search(
            store_id, query="the light is blinking purple", max_num_results=3
        )
    )
    table = Table(title='search: "the light is blinking purple"')
    for c in ("score", "file", "passage"):
        table.add_column(c)
    for h in hits:
        table.add_row(f"{h.score:.3f}", h.filename, " ".join(h.content[0].text.split())[:110] + "…")
    session.console.print(table)
    session.results["search_top_hit"] = hits[0].filename if hits else None


def citations(response: Any) -> list[str]:
    """The file names cited by a Responses API answer, in order."""
    names: list[str] = []
    for item in response.output:
        for part in getattr(item, "content", None) or []:
            for a in getattr(part, "annotations", None) or []:
                if a.type == "file_citation" and a.filename not in names:
                    names.append(a.filename)
    return names


def step_ask(session: Session) -> None:
    session.title(6, "answers from the manual, with citations")
    store_id = session.state.get("store_id") or build_store(session)
    session.state["store_id"] = store_id
    session.show(
        f'tunelab ask --store {store_id} -n {PASSAGES} "{QUESTIONS[0]}"',
        f"""
r = client.responses.create(
    model="{session.chat_model}", input="{QUESTIONS[0]}",
    tools=[{{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": {PASSAGES}}}],
)
print(r.output_text)
for part in r.output[-1].content:
    for a in part.annotations:
        print("cites", a.filename)
""",
    )
    table = Table(title=f"{session.chat_model} answering from retrieved passages", show_lines=True)
    for c in ("question", "answer", "cited"):
        table.add_column(c)
    for q in QUESTIONS:
        with needs("grounded answers (/v1/responses with file_search)"):
            r = session.client.responses.create(
                model=session.chat_model,
                input=q,
                max_output_tokens=80,
                temperature=0,
                tools=[
                    {
                        "type": "file_search",
                        "vector_store_ids": [store_id],
                        "max_num_results": PASSAGES,
                    }
                ],
            )
        table.add_row(q, r.output_text.strip(), ", ".join(citations(r)))
    session.console.print(table)
