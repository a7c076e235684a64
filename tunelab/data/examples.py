"""Reading a fine-tuning JSONL file as normalised examples.

A normalised example is either {"messages": [...]} (chat; assistant messages may
carry "weight": 0|1) or {"prompt": str, "completion": str}. The training process
reads its data through `iter_examples`, so every format the validator accepts
(chat, prompt/completion, Alpaca and ShareGPT lines, any detected text encoding)
is one the trainer understands.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab.data.formats import parse_example
from tunelab.data.text import iter_lines


def normalise(obj: Any) -> dict[str, Any]:
    """One parsed line -> a normalised example; ValueError says what is wrong."""
    parsed = parse_example(obj)
    if parsed.example is None:
        issue = parsed.issues[0]
        where = f"message {issue.message_index}: " if issue.message_index else ""
        raise ValueError(where + issue.message)
    return parsed.example


def iter_examples(path: Path) -> Iterator[dict[str, Any]]:
    """The file's examples in order; ValueError names the first bad line."""
    for ln in iter_lines(Path(path)):
        if ln.text is None:
            raise ValueError(f"Line {ln.number}: {ln.error}")
        if not ln.text.strip():
            continue
        try:
            yield normalise(json.loads(ln.text))
        except ValueError as e:
            raise ValueError(f"Line {ln.number}: {e}") from None
