"""Opening user files as text: encoding detection and binary-file refusal.

Users bring UTF-8 (with or without a BOM), UTF-16 from Windows tools, and GBK /
GB18030 from Excel on a Chinese Windows machine. A BOM decides at once; otherwise
the first megabyte is tried as UTF-8 and, failing that, charset-normalizer names
the encoding. GBK and GB2312 are read as GB18030, their superset, so a rare
character later in the file still decodes.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SAMPLE_BYTES = 1 << 20

# charset-normalizer's names for encodings whose superset we read instead.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "ascii": "utf-8"}


class UnreadableFile(ValueError):
    """The file cannot be read as text; the message says why and what to do."""


def _mostly_utf8(sample: bytes) -> bool:
    """Valid UTF-8, or UTF-8 text with a few corrupt bytes (reported by line later).

    GBK read as UTF-8 is nearly all replacement characters; a UTF-8 file with one
    bad byte is nearly all valid multi-byte characters.
    """
    # final=False: the sample may end in the middle of a multi-byte character.
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(sample, final=False)
    bad = text.count("\ufffd")
    if bad == 0:
        return True
    valid_non_ascii = sum(1 for ch in text if ord(ch) > 127) - bad
    return bad * 10 <= valid_non_ascii


def detect_encoding(sample: bytes) -> str:
    """The Python codec name to read a file whose first bytes are `sample`."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" not in sample and _mostly_utf8(sample):
        return "utf-8"
    from charset_normalizer import from_bytes

    matches = from_bytes(sample)
    best = matches.best()
    # Short Chinese text decodes cleanly as Korean or Japanese too, and charset-normalizer
    # may rank those first; a GB18030 reading that is as clean wins the tie, since GBK
    # exports from Chinese Windows are the legacy files users bring here.
    chinese = next((m for m in matches if "gb18030" in m.could_be_from_charset), None)
    if best is not None and chinese is not None and chinese.chaos <= best.chaos + 0.01:
        best = chinese
    if best is None or (b"\x00" in sample and not best.encoding.startswith("utf_16")):
        raise UnreadableFile(
            "The file does not look like text (it contains binary data). "
            "Save it as CSV, TSV, XLSX, JSON or JSONL and try again."
        )
    enc = codecs.lookup(best.encoding).name
    return _SUPERSETS.get(enc, enc)


def read_text(path: Path) -> tuple[str, str]:
    """The whole file as text, and its encoding; UnreadableFile names a bad line."""
    data = Path(path).read_bytes()
    encoding = detect_encoding(data[:SAMPLE_BYTES])
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UnreadableFile(
            f"Line {line} is not valid {encoding} text (the rest of the file is). "
            "Save the file as UTF-8 and try again."
        ) from None
    # The same newline handling as open_text.
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


# One example is far below this; a longer "line" is a file without line breaks.
MAX_LINE_BYTES = 16 * 1024 * 1024


def long_line_message(size: int, max_bytes: int = MAX_LINE_BYTES) -> str:
    return (
        f"the line is {size / 1e6:.0f} MB long, more than the {max_bytes // (1 << 20)} MB one "
        "example may have; JSONL needs one example per line, so check that the file has line "
        "breaks between examples"
    )


@dataclass
class Line:
    """One physical line: its text, or why it could not be read."""

    number: int  # 1-based
    text: str | None
    nbytes: int
    error: str | None = None


def file_encoding(path: Path) -> str:
    with open(path, "rb") as fh:
        return detect_encoding(fh.read(SAMPLE_BYTES))


def iter_lines(
    path: Path, *, encoding: str | None = None, max_bytes: int = MAX_LINE_BYTES
) -> Iterator[Line]:
    """The file's lines in bounded memory, decoded one by one.

    Reading bytes and decoding each line (rather than a text stream) gives the
    exact line of an undecodable byte and a byte count for progress bars. A line
    longer than max_bytes is skipped in chunks and reported, never held whole.
    UTF-16/32 have no single-byte newline, so they are read as a text stream.
    """
    encoding = encoding or file_encoding(path)
    if encoding.startswith(("utf-16", "utf-32")):
        yield from _iter_text_lines(path, encoding)
        return
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    with open(path, "rb") as fh:
        if encoding == "utf-8-sig":
            fh.read(len(codecs.BOM_UTF8))
        number = 0
        while True:
            raw = fh.readline(max_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                size = len(raw)
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(1 << 20)
                    size += len(raw)
                yield Line(number, None, size, long_line_message(size, max_bytes))
                continue
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                yield Line(
                    number,
                    None,
                    len(raw),
                    (
                        f"the line is not valid {encoding} text (the rest of the file is); "
                        "save the file as UTF-8"
                    ),
                )
                continue
            yield Line(number, text.rstrip("\r\n"), len(raw))


def _iter_text_lines(path: Path, encoding: str) -> Iterator[Line]:
    with open(path, encoding=encoding, errors="replace", newline=None) as fh:
        for number, text in enumerate(fh, 1):
            yield Line(number, text.rstrip("\n"), len(text.encode(encoding, "replace")))
