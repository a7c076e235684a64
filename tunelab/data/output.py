"""Writing prepared data: never overwriting, never half-written, UTF-8 kept readable."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPLIT_SEED = 42
MAX_VALID_ROWS = 1000


def unique_path(path: Path, source: Path) -> Path:
    """`path`, or `name (1).jsonl`, `name (2).jsonl`...: never an existing file or the input."""
    candidate, n = path, 0
    while candidate.exists() or candidate.resolve() == source.resolve():
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


def write_jsonl(path: Path, examples: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line, Chinese as itself (not \\uXXXX); renamed into place when done."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for ex in examples:
                fh.write(json.dumps(ex, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def train_valid_split(examples: list[Any]) -> tuple[list[Any], list[Any]]:
    """The legacy split: at most 1000 (and at least 20 %) for validation, fixed seed."""
    n_train = max(len(examples) - MAX_VALID_ROWS, int(len(examples) * 0.8))
    chosen = set(random.Random(SPLIT_SEED).sample(range(len(examples)), n_train))
    train = [ex for i, ex in enumerate(examples) if i in chosen]
    valid = [ex for i, ex in enumerate(examples) if i not in chosen]
    return train, valid
