"""The grounded-answer prompt and the citations read back out of the answer.

`build_grounded_messages` is THE prompt layout for answering from retrieved passages.
It is a pure function on purpose: a model fine-tuned to answer in this exact layout
(numbered passages with their file names, then the question, answer with [n]
citations) is served through the same function, so training data and serving agree.

`find_citations` maps the model's [n] markers back to passages; when the model cites
nothing, the answer is attributed to the top passage, because that is what the answer
was generated from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_INSTRUCTIONS = (
    "Answer the question using only the numbered passages below. "
    "Cite the passages you used with their numbers in square brackets, like [1]. "
    "If the passages do not contain the answer, say that you do not know."
)

_MARKER = re.compile(r"\[(\d{1,3})\]|【(\d{1,3})】")


@dataclass(frozen=True)
class Passage:
    file_id: str
    filename: str
    text: str


@dataclass(frozen=True)
class Citation:
    passage: int  # 0-based index into the passages
    index: int  # character offset in the answer where the citation applies


def format_passages(passages: list[Passage]) -> str:
    return "\n\n".join(
        f"[{n}] ({p.filename})\n{p.text.strip()}" for n, p in enumerate(passages, start=1)
    )


def build_grounded_messages(
    question: str, passages: list[Passage], instructions: str | None = None
) -> list[dict[str, str]]:
    """Chat messages: the instructions as system, then passages and question as user."""
    system = (
        DEFAULT_INSTRUCTIONS if not instructions else f"{instructions}\n\n{DEFAULT_INSTRUCTIONS}"
    )
    if passages:
        user = f"Passages:\n\n{format_passages(passages)}\n\nQuestion: {question}"
    else:
        user = f"Passages: (none found)\n\nQuestion: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def find_citations(answer: str, n_passages: int) -> list[Citation]:
    """Citations for each valid [n] marker (in order, once per passage); else the top passage."""
    found: list[Citation] = []
    seen: set[int] = set()
    for m in _MARKER.finditer(answer):
        n = int(m.group(1) or m.group(2))
        if 1 <= n <= n_passages and n - 1 not in seen:
            seen.add(n - 1)
            found.append(Citation(passage=n - 1, index=m.start()))
    if not found and n_passages:
        found.append(Citation(passage=0, index=len(answer)))
    return found
