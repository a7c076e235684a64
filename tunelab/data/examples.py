"""Reading a fine-tuning JSONL file as normalised examples.

A normalised example is either {"messages": [...]} (chat; assistant messages may
carry "weight": 0|1) or {"prompt": str, "completion": str}. The training process
reads its data through `iter_examples`, so every format the validator accepts is
one the trainer understands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def normalise(obj: Any) -> dict[str, Any]:
    """One parsed line -> a normalised example; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        return {"messages": obj["messages"]}
    if "prompt" in obj and "completion" in obj:
        return {"prompt": obj["prompt"], "completion": obj["completion"]}
    raise ValueError(
        "Unexpected file format, expected either prompt/completion pairs or chat messages."
    )


def iter_examples(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if line.strip():
                yield normalise(json.loads(line))
