"""Text out of the documents people attach to vector stores.

Supported: .txt .md .markdown .html .htm .pdf .docx .json .jsonl .csv. Text files may be
in any encoding charset-normalizer recognises (UTF-8 with or without BOM, GBK/GB18030
manuals, Big5, Shift-JIS, Latin-1...). Structured formats are flattened into readable
"key: value" lines, one record per paragraph, so the chunker can break between records.

A document that cannot be indexed raises `DocumentError` with an OpenAI `last_error`
code (`unsupported_file` or `invalid_file`) and a message that says what to do.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import PurePath
from typing import Any

SUPPORTED_EXTENSIONS = (
    ".txt",
    ".md",
    ".markdown",
    ".html",
    ".htm",
    ".pdf",
    ".docx",
    ".json",
    ".jsonl",
    ".csv",
)


class DocumentError(Exception):
    """Why a document cannot be indexed; `code` is OpenAI's last_error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_text(data: bytes) -> str:
    """Bytes of a text file to str, detecting the encoding when it is not UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise DocumentError(
            "invalid_file",
            "The file is not readable text in any known encoding; "
            "save it as UTF-8 or upload a PDF/DOCX instead.",
        )
    return str(best)


def normalise_space(text: str) -> str:
    """Line ends, NULs, spaces before a line end, runs of blank lines: what `_tidy`
    does but the final strip. Every rewrite touches only whitespace (and NUL), so
    text cut just after a visible character is tidied the same in pieces
    (`streaming.tidied`)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\u00a0]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


def _tidy(text: str) -> str:
    return normalise_space(text).strip()


def _html(data: bytes) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    # Block elements end with a newline so headings and paragraphs stay separate.
    return soup.get_text("\n")


def _pdf(data: bytes) -> str:
    return "".join(pdf_pages(data))


def pdf_pages(data: bytes) -> Iterator[str]:
    """A PDF's text a page at a time (pages joined by a blank line)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Owner-password-only PDFs open with the empty user password.
            try:
                opened = bool(reader.decrypt(""))  # PasswordType.NOT_DECRYPTED is 0
            except Exception:
                opened = False
            if not opened:
                raise DocumentError(
                    "invalid_file",
                    "The PDF is encrypted with a password; upload a decrypted copy.",
                )
        any_text = False
        for n, page in enumerate(reader.pages):
            text = (page.extract_text() or "").strip()
            any_text = any_text or bool(text)
            yield ("\n\n" if n else "") + text
    except PdfReadError as e:
        raise DocumentError("invalid_file", f"The PDF could not be read ({e}).") from e
    if not any_text:
        raise DocumentError(
            "invalid_file",
            "The PDF has no extractable text (a scanned image?); OCR is not supported, "
            "upload a text PDF or the document's text.",
        )


def _docx(data: bytes) -> str:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as e:  # python-docx raises several unrelated types for a bad zip
        raise DocumentError("invalid_file", f"The .docx file could not be read ({e}).") from e
    parts = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n\n".join(parts)


def _flatten(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        lines: list[str] = []
        for k, v in value.items():
            lines.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return lines
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return [line for v in value for line in _flatten(v, prefix)]
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = "" if value is None else str(value)
    return [f"{prefix}: {text}" if prefix else text]


def _json(data: bytes) -> str:
    try:
        obj = json.loads(decode_text(data))
    except json.JSONDecodeError as e:
        raise DocumentError("invalid_file", f"The JSON file is not valid JSON: {e}.") from e
    records = obj if isinstance(obj, list) else [obj]
    return "\n\n".join("\n".join(_flatten(r)) for r in records)


def _jsonl(data: bytes) -> str:
    records = []
    for n, line in enumerate(decode_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append("\n".join(_flatten(json.loads(line))))
        except json.JSONDecodeError as e:
            raise DocumentError(
                "invalid_file", f"Line {n} of the JSONL file is not valid JSON: {e.msg}."
            ) from e
    return "\n\n".join(records)


def _csv(data: bytes) -> str:
    text = decode_text(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    if not body:
        return " | ".join(header)
    return "\n\n".join(
        # a short row leaves its last columns out
        "\n".join(f"{h}: {v}" for h, v in zip(header, row, strict=False) if v.strip())
        for row in body
    )


_EXTRACTORS: dict[str, Callable[[bytes], str]] = {
    ".txt": decode_text,
    ".md": decode_text,
    ".markdown": decode_text,
    ".html": _html,
    ".htm": _html,
    ".pdf": _pdf,
    ".docx": _docx,
    ".json": _json,
    ".jsonl": _jsonl,
    ".csv": _csv,
}


def extractor(filename: str) -> Callable[[bytes], str]:
    """What turns this file's bytes into text, chosen by the name's extension."""
    ext = PurePath(filename).suffix.lower()
    found = _EXTRACTORS.get(ext)
    if found is None:
        raise DocumentError(
            "unsupported_file",
            f"Files of type '{ext or filename}' cannot be added to a vector store; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}.",
        )
    return found


def extract_text(filename: str, data: bytes) -> str:
    """The document's text, chosen by the file name's extension."""
    text = _tidy(extractor(filename)(data))
    if not text:
        raise DocumentError("invalid_file", f"'{filename}' contains no text to index.")
    return text
