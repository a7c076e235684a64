"""Chat examples as a re-readable stream, so prepare-data handles huge JSONL files.

A chat JSONL file is validated, analysed, counted and written in separate passes
over the file, each holding one example at a time; only 16-byte digests are kept
to find duplicates. Examples from CSV/XLSX/JSON (already in memory) use the same
interface.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from tunelab.data.formats import detect_format, parse_example
from tunelab.data.readers import Record
from tunelab.data.text import UnreadableFile, iter_lines

CHAT_FORMATS = ("chat", "alpaca", "sharegpt")

T = TypeVar("T")


class Examples(Generic[T]):
    """Items (records, or their examples) that can be iterated more than once,
    with a known count."""

    def __init__(self, factory: Callable[[], Iterator[T]], count: int) -> None:
        self._factory, self._count = factory, count

    @classmethod
    def of(cls, rows: list[T]) -> Examples[T]:
        return cls(lambda: iter(rows), len(rows))

    def __iter__(self) -> Iterator[T]:
        return self._factory()

    def __len__(self) -> int:
        return self._count

    def objs(self: Examples[Record]) -> Examples[dict[str, Any]]:
        """The same stream, yielding the examples themselves."""
        return Examples(lambda: (r.obj for r in self), self._count)


def is_chat_jsonl(path: Path) -> bool:
    """A .jsonl file whose first example is chat-like (chat, Alpaca or ShareGPT)."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    try:
        for ln in iter_lines(path):
            if ln.text is None:
                return False
            if ln.text.strip():
                return detect_format(json.loads(ln.text)) in CHAT_FORMATS
    except (UnreadableFile, ValueError):
        return False
    return False


def jsonl_examples(path: Path, count: int) -> Examples[Record]:
    """The converted examples of a JSONL file that passed validation."""

    def read() -> Iterator[Record]:
        for ln in iter_lines(path):
            if ln.text and not ln.text.isspace():
                example = parse_example(json.loads(ln.text)).example
                assert example is not None, "the file changed since it was validated"
                yield Record(ln.number, example)

    return Examples(read, count)


def digest(example: Any) -> bytes:
    return hashlib.blake2b(
        json.dumps(example, sort_keys=True, ensure_ascii=False).encode(), digest_size=16
    ).digest()


def without_duplicates(rows: Iterable[Record], n_unique: int) -> Examples[Record]:
    """`rows` must be re-iterable (a list or Examples): each pass reads it again."""

    def read() -> Iterator[Record]:
        seen: set[bytes] = set()
        for r in rows:
            key = digest(r.obj)
            if key not in seen:
                seen.add(key)
                yield r

    return Examples(read, n_unique)
