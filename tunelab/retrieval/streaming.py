"""Documents read, tidied and chunked a window at a time, so that ingesting a file
holds a bounded part of it in memory, whatever its size.

- Plain text and Markdown are read in blocks and decoded as they come: no size limit.
  They are checked to be UTF-8 in a first pass (a file in another encoding is
  decoded whole by charset-normalizer, so it is held to `limits.MAX_INGEST_BYTES`).
- A PDF is parsed whole by pypdf (held to MAX_INGEST_BYTES), its text comes a page
  at a time.
- HTML, DOCX, JSON, JSONL and CSV need the whole document to parse: held to
  MAX_INGEST_BYTES.

Whatever the format, the text is tidied exactly as `documents.extract_text` tidies it
and chunked WINDOW_CHARS at a time by `chunking.chunk_window`, so a document that
fits in one window gets the very chunks it got when it was read whole, and a longer
one the chunks it would get (but where a window restarts inside a word).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

from tunelab import limits
from tunelab.retrieval.chunking import Chunk, StaticStrategy, chunk_window
from tunelab.retrieval.documents import (
    DocumentError,
    extractor,
    normalise_space,
    pdf_pages,
)

STREAMED = (".txt", ".md", ".markdown")
BLOCK_BYTES = 256 * 1024  # read from disk at a time
PIECE_CHARS = 16 * 1024  # the most text `tidied` yields at once (windows grow by this)
# Characters of text chunked at a time (~64k tokens of English: a few MB of offsets).
WINDOW_CHARS = 256 * 1024
_BOM = b"\xef\xbb\xbf"


def document_text(filename: str, path: Path, size: int) -> Iterator[str]:
    """The document's tidied text in pieces (their concatenation is `extract_text`'s)."""
    read = extractor(filename)  # an unsupported type is refused before anything is read
    if PurePath(filename).suffix.lower() in STREAMED and _is_utf8(path):
        return tidied(_utf8_blocks(path))
    if size > limits.MAX_INGEST_BYTES:
        raise DocumentError(
            "invalid_file",  # one of OpenAI's three codes; the message says why
            f"'{filename}' has {size} bytes; a vector store indexes {_capped(filename)} of "
            f"at most {limits.MAX_INGEST_BYTES} bytes. Split it into several files.",
        )
    if PurePath(filename).suffix.lower() == ".pdf":
        return tidied(pdf_pages(path.read_bytes()))
    return tidied(iter([read(path.read_bytes())]))


def _capped(filename: str) -> str:
    if PurePath(filename).suffix.lower() in STREAMED:
        return "text files not in UTF-8"
    return f"{PurePath(filename).suffix.lower()} files"


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for block in _blocks(path):
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        first = fh.read(BLOCK_BYTES)
        yield first.removeprefix(_BOM)
        while block := fh.read(BLOCK_BYTES):
            yield block


def _utf8_blocks(path: Path) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    for block in _blocks(path):
        yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


_BLANK = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + "\x00"


def _visible_end(text: str) -> int:
    """Just after the last character that is neither whitespace nor NUL (0 if none)."""
    return len(text.rstrip(_BLANK))


def tidied(pieces: Iterator[str]) -> Iterator[str]:
    """`documents._tidy` applied to the concatenation of `pieces`, piece by piece.

    Each piece is cut just after its last visible character and the whitespace after
    the cut waits for the next piece: `normalise_space` only rewrites whitespace, so
    no rewrite spans a cut. The leading whitespace of the text and its trailing
    whitespace are dropped, as `strip()` drops them.
    """
    held = ""
    started = False
    for piece in pieces:
        text = held + piece
        cut = _visible_end(text)
        held = text[cut:]
        if len(held) > 2 * BLOCK_BYTES:  # a huge run of blank space: keep it tidied
            tail = "\r" if held.endswith("\r") else ""
            held = normalise_space(held.removesuffix(tail)) + tail
        out = normalise_space(text[:cut])
        if not started:
            out = out.lstrip()
            started = bool(out)
        for i in range(0, len(out), PIECE_CHARS):  # a whole parsed document is one piece
            yield out[i : i + PIECE_CHARS]


def fill(buffer: str, pieces: Iterator[str], size: int) -> tuple[str, bool]:
    """`buffer` with pieces appended until it holds `size` characters; and whether the
    pieces ran out."""
    parts = [buffer]
    have = len(buffer)
    while have < size:
        piece = next(pieces, None)
        if piece is None:
            return "".join(parts), True
        parts.append(piece)
        have += len(piece)
    return "".join(parts), False


def stream_chunks(
    first: str, ended: bool, rest: Iterator[str], tokenizer: Any, strategy: StaticStrategy
) -> Iterator[Chunk]:
    """The chunks of `first` + the text still in `rest`, a window at a time.

    `first` is the opening window (`fill(..)` of WINDOW_CHARS), already read because
    it also chooses the store's model; `ended` says whether it is the whole text.
    """
    buffer, base = first, 0
    while True:
        chunks, resume = chunk_window(buffer, tokenizer, strategy, final=ended)
        if not chunks and not ended:  # not one settled chunk in a window (giant tokens)
            chunks, resume = chunk_window(buffer, tokenizer, strategy, final=True)
        for c in chunks:
            yield Chunk(c.text, c.start + base, c.end + base, c.n_tokens)
        if ended:
            return
        buffer, base = buffer[resume:], base + resume
        buffer, ended = fill(buffer, rest, WINDOW_CHARS)
        if not buffer:
            return
