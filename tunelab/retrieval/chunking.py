"""Splitting a document into chunks measured in embedding-model tokens.

A strategy is clamped to the embedding model's window: a chunk longer than the
window would be silently truncated by the model, so its tail could be found by
keyword search but never by meaning. For all-minilm-l6-v2 (max_seq_length 256, of
which [CLS] and [SEP] take 2) the effective chunk is 254 tokens, less the document
header every chunk is indexed with (`fitted_header`); a requested overlap is scaled
by the same factor (static 800/400 -> 254/127), keeping the overlap *ratio*.

The `auto` strategy (DEFAULT_*) is OpenAI's default, 800/400, clamped the same way
(254/127 for MiniLM). On the man-en development questions (docs/retrieval.md) 254/0
ranks as well (MRR 0.69 vs 0.67) with 41% fewer chunks, but answers suffer: with no
overlap a short manual's sections share windows, and the window holding "E4: ..."
opens with "E1: ...", so a small model answers about E1 (tests/test_responses_file_search.py).
With overlap some window starts at, or near, every section.

Chunks end, where possible, before a Markdown heading, else at a paragraph break,
else at a sentence end (". ! ?" and the Chinese "。！？；"), else at a line break, else
at any token; the next chunk starts at the earliest sentence start inside the overlap.
Chinese text needs no spaces: the tokenizer's character offsets drive every cut, and
each chunk's text is a slice of the source string (never detokenised ids, which
would lose case and spacing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

DEFAULT_MAX_TOKENS = 800
DEFAULT_OVERLAP_TOKENS = 400
MIN_MAX_TOKENS = 100
MAX_MAX_TOKENS = 4096

HEADER_CHARS = 200  # a document header is cut to this many characters...
HEADER_SHARE = 4  # ...and to at most 1/HEADER_SHARE of the model's window

_SENTENCE_END = re.compile(r"[.!?](?=[\s\"')\]])|[。！？；…]")


@dataclass(frozen=True)
class StaticStrategy:
    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS

    def clamped(self, window: int) -> StaticStrategy:
        """The strategy that fits a model with `window` content tokens."""
        if self.max_tokens <= window:
            return self
        overlap = self.overlap_tokens * window // self.max_tokens
        return StaticStrategy(window, overlap)


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets into the source text
    end: int
    n_tokens: int


def _break_scores(text: str, starts: list[int]) -> list[int]:
    """For each token index t, how good a place to cut just before token t is.

    4 = before a Markdown heading, 3 = paragraph break, 2 = sentence end,
    1 = line break, 0 = anywhere else.
    """
    scores = [0] * (len(starts) + 1)
    scores[len(starts)] = 3
    for t in range(1, len(starts)):
        gap = text[starts[t - 1] : starts[t]]
        # The gap is the previous token plus the whitespace before this one.
        if "\n\n" in gap or re.search(r"\n\s*\n", gap):
            scores[t] = 4 if text.startswith("#", starts[t]) else 3
        elif _SENTENCE_END.search(gap):
            scores[t] = 2
        elif "\n" in gap:
            scores[t] = 1
    return scores


def token_offsets(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each token of `text`, no special tokens."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [(s, e) for s, e in enc["offset_mapping"] if e > s]


def chunk_text(text: str, tokenizer: Any, strategy: StaticStrategy) -> list[Chunk]:
    """Overlapping chunks of at most `strategy.max_tokens` tokens covering `text`."""
    return chunk_window(text, tokenizer, strategy, final=True)[0]


# Tokens at a window's end that may tokenise differently once the text goes on (a word
# cut in two): no chunk of a window that is not the last one looks at them.
UNSETTLED_TOKENS = 16


def chunk_window(
    text: str, tokenizer: Any, strategy: StaticStrategy, *, final: bool
) -> tuple[list[Chunk], int]:
    """The chunks of `text` as `chunk_text` cuts them, and where the text they do not
    cover starts. With `final` False, `text` is a window of a longer document: chunking
    stops before the first chunk whose choice of end could depend on text past the
    window, so chunking the rest from the returned offset gives the same chunks as
    chunking the whole (ingestion.py streams large files this way)."""
    offsets = token_offsets(tokenizer, text)
    n = len(offsets)
    if n == 0:
        return [], len(text)
    starts = [s for s, _ in offsets]
    scores = _break_scores(text, starts)
    size, overlap = strategy.max_tokens, strategy.overlap_tokens
    chunks: list[Chunk] = []
    i = 0
    while True:
        if not final and i + size + UNSETTLED_TOKENS > n:
            return chunks, starts[i]
        end = min(i + size, n)
        if end < n:
            # Best break in the second half of the window, latest on ties.
            lo = i + max(1, size // 2)
            best = max(range(lo, end + 1), key=lambda t: (scores[t], t))
            if scores[best] > 0:
                end = best
        chunks.append(
            Chunk(text[starts[i] : offsets[end - 1][1]], starts[i], offsets[end - 1][1], end - i)
        )
        if end >= n:
            return chunks, len(text)
        nxt = max(end - overlap, i + 1)
        # Start at a sentence or paragraph start inside the overlap when there is one.
        better = [t for t in range(nxt, end) if scores[t] >= 2]
        i = better[0] if better and overlap > 0 else nxt


def document_header(filename: str, text: str) -> str:
    """What every chunk of a document is indexed with besides its own text.

    A passage deep inside a manual page ("-r, --recursive: ...") rarely names what
    the page is about, so the question "how do I copy a folder with everything in
    it" cannot tell cp's options from rsync's. Each chunk is therefore embedded and
    keyword-indexed as header + text (a "contextual chunk header"; the text that
    search returns is the chunk alone): the file name without its extension, the
    document's first line (an HTML page's <title>, a Markdown page's heading, a
    man page's "LS(1) User Commands"), and, when the opening has a man-style NAME
    section, its first line ("ls - list directory contents").
    """
    parts = [PurePath(filename).stem]
    lines = [" ".join(line.split()) for line in text.splitlines()[:40]]
    lines = [line for line in lines if line]
    if lines:
        parts.append(lines[0])
    for n, line in enumerate(lines[:-1]):
        if line == "NAME" or line.endswith("(NAME)"):  # manpages-zh: "名称 (NAME)"
            parts.append(lines[n + 1])
            break
    header = " — ".join(dict.fromkeys(p for p in parts if p))
    return header[:HEADER_CHARS] + "\n\n"


def fitted_header(filename: str, text: str, tokenizer: Any, window: int) -> tuple[str, int]:
    """`document_header`, cut to a quarter of the window; (header, its token count).

    The chunks of the document are then cut to the window less these tokens, so
    header + chunk is never truncated by the model.
    """
    header = document_header(filename, text)
    offsets = token_offsets(tokenizer, header)
    limit = window // HEADER_SHARE
    if len(offsets) > limit:
        header = header[: offsets[limit - 1][1]] + "\n\n"
        offsets = offsets[:limit]
    return header, len(offsets)
