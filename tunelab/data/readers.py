"""Reading any training-data file users bring into records with line numbers.

Formats, chosen by extension as the legacy `prepare_data` tool does: CSV, TSV,
XLSX (first sheet), TXT (one completion per line), JSON (an array of objects, an
object of equal-length arrays, or JSON lines saved as .json) and JSONL. Every cell
of a table is read as a string; empty cells read as "". A record's `line` is the
line (or spreadsheet row) where it starts, so problems name a place the user can
find. Read errors raise `UnreadableFile` with a message that says what to do.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.formats import detect_format
from tunelab.data.text import MAX_LINE_BYTES, UnreadableFile, long_line_message, read_text
from tunelab.data.validation import json_error_message

EXTENSIONS = {
    ".csv": "CSV",
    ".tsv": "TSV",
    ".xlsx": "XLSX",
    ".txt": "TXT",
    ".json": "JSON",
    ".jsonl": "JSONL",
}


@dataclass
class Record:
    line: int  # 1-based line (spreadsheet row for XLSX) where the example starts
    obj: Any


@dataclass
class ReadResult:
    records: list[Record]
    file_type: str  # CSV | TSV | XLSX | TXT | JSON | JSONL
    encoding: str | None = None  # None for XLSX
    notes: list[str] = field(default_factory=list)  # things to tell the user
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, why) for JSONL
    needs_conversion: bool = False  # not already JSONL: a new file must be written


def read_records(path: Path) -> ReadResult:
    path = Path(path)
    if not path.is_file():
        raise UnreadableFile(f"File {path} does not exist.")
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        what = f"the `{path.suffix}` extension" if path.suffix else "a missing file extension"
        raise UnreadableFile(
            f"Your file `{path.name}` has {what}. Supported formats are CSV, TSV, XLSX, TXT, "
            "JSON and JSONL; save the file in one of them with its extension and try again."
        )
    file_type = EXTENSIONS[ext]
    if path.stat().st_size == 0:
        raise UnreadableFile(
            f"Your file `{path.name}` is empty; it needs one example per line or row."
        )
    if file_type == "XLSX":
        result = _read_xlsx(path)
    else:
        text, encoding = read_text(path)
        if not text.strip():
            raise UnreadableFile(f"Your file `{path.name}` has only whitespace; it needs examples.")
        reader = {
            "CSV": _read_csv,
            "TSV": _read_csv,
            "TXT": _read_txt,
            "JSON": _read_json,
            "JSONL": _read_json,
        }
        result = reader[file_type](text, file_type)
        result.encoding = encoding
        if encoding not in ("utf-8", "utf-8-sig"):
            result.notes.append(f"The file is encoded as {encoding}; the output will be UTF-8")
            result.needs_conversion = True
    if file_type != "JSONL":
        result.needs_conversion = True
    if not result.records and not result.bad_lines:
        raise UnreadableFile(f"Your file `{path.name}` has no examples.")
    return result


def _read_csv(text: str, file_type: str) -> ReadResult:
    delimiter = "\t" if file_type == "TSV" else ","
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(rows)
        records, start = [], rows.line_num + 1
        for values in rows:
            if any(v.strip() for v in values):
                if len(values) > len(header):
                    raise UnreadableFile(
                        f"Line {start} has {len(values)} fields but the header has {len(header)}; "
                        f"quote values that contain a {'tab' if file_type == 'TSV' else 'comma'} "
                        '(like "a, b") and try again.'
                    )
                values += [""] * (len(header) - len(values))
                records.append(Record(start, dict(zip(header, values, strict=True))))
            start = rows.line_num + 1
    except csv.Error as e:
        raise UnreadableFile(
            f"Line {rows.line_num}: the file does not appear to be in valid {file_type} format "
            f"({e})."
        ) from None
    if not records:
        raise UnreadableFile(
            f"The {file_type} file has a header row ({', '.join(header)}) but no data rows; "
            "add one example per row under the header."
        )
    return ReadResult(records, file_type)


def _read_xlsx(path: Path) -> ReadResult:
    import zipfile

    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as e:
        raise UnreadableFile(
            f"Your file `{path.name}` does not appear to be in valid XLSX format ({e}); "
            "open it in a spreadsheet program and save it as .xlsx or .csv."
        ) from None
    notes = []
    if len(book.sheetnames) > 1:
        notes.append(
            f"Your file has {len(book.sheetnames)} sheets; only the first one, "
            f"`{book.sheetnames[0]}`, is read"
        )
    rows = book.worksheets[0].iter_rows(values_only=True)
    header = [_cell(v) for v in next(rows, ())]
    records = []
    for number, values in enumerate(rows, 2):
        cells = [_cell(v) for v in values]
        if any(c.strip() for c in cells[len(header) :]):
            raise UnreadableFile(
                f"Row {number} has values in columns that have no header; give every column "
                "a name in the first row (prompt, completion, ...) and try again."
            )
        if any(c.strip() for c in cells):
            # a short row leaves its last columns out; extra cells are empty (checked above)
            records.append(Record(number, dict(zip(header, cells, strict=False))))
    book.close()
    if not records:
        raise UnreadableFile(
            "The XLSX file's first sheet has a header row but no data rows; "
            "add one example per row under the header."
        )
    return ReadResult(records, "XLSX", notes=notes)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a label typed as 1 reads as "1", not "1.0"
    return str(value)


def _read_txt(text: str, file_type: str) -> ReadResult:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    records = [Record(i, {"prompt": "", "completion": line}) for i, line in enumerate(lines, 1)]
    return ReadResult(records, file_type)


def _read_json(text: str, file_type: str) -> ReadResult:
    """JSON lines, or one JSON document (an array, possibly pretty-printed)."""
    lines = _read_json_lines(text, file_type)
    # One line holding anything but a single example is a JSON document.
    single = lines.records[0].obj if len(lines.records) == 1 else None
    one_document = single is not None and not (
        isinstance(single, dict)
        and (
            detect_format(single) in ("chat", "sharegpt")
            or not all(isinstance(v, list) for v in single.values())
        )
    )
    if lines.bad_lines or one_document:
        try:
            doc = _read_json_document(text, file_type)
        except UnreadableFile:
            if file_type == "JSONL":
                return lines  # the bad lines are reported one by one
            raise
        if file_type == "JSONL":
            doc.notes.append(
                "Your JSONL file appears to be a JSON document; it will be converted to JSONL"
            )
        doc.needs_conversion = True
        return doc
    if file_type == "JSON" and len(lines.records) > 1:
        lines.notes.append(
            "Your JSON file appears to be in JSONL format; it will be converted to JSONL"
        )
    return lines


def _read_json_lines(text: str, file_type: str) -> ReadResult:
    result = ReadResult([], file_type)
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            raise UnreadableFile(f"Line {number}: {long_line_message(len(line.encode('utf-8')))}.")
        try:
            result.records.append(Record(number, json.loads(line)))
        except ValueError as e:
            result.bad_lines.append((number, json_error_message(line, e)))
    return result


def _read_json_document(text: str, file_type: str) -> ReadResult:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UnreadableFile(
            f"Line {e.lineno}: the file does not appear to be in valid {file_type} format "
            f"({e.msg} at column {e.colno}). If it was cut off, restore its end; "
            "a JSON file is one array of examples, a JSONL file one example per line."
        ) from None
    if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        return ReadResult(_columns_to_records(doc), file_type)
    if isinstance(doc, dict):
        return ReadResult([Record(1, doc)], file_type)
    if not isinstance(doc, list):
        raise UnreadableFile(
            f"The JSON file holds a {type(doc).__name__}; it must hold an array of examples "
            '([{"messages": [...]}, ...]) or an object of equal-length arrays.'
        )
    return ReadResult([Record(line, obj) for line, obj in _array_items(text, doc)], file_type)


def _columns_to_records(doc: dict[str, list[Any]]) -> list[Record]:
    lengths = {k: len(v) for k, v in doc.items()}
    if len(set(lengths.values())) > 1:
        raise UnreadableFile(
            "The JSON object's arrays have different lengths "
            f"({', '.join(f'{k}: {n}' for k, n in lengths.items())}); each key must hold one "
            "value per example."
        )
    n = next(iter(lengths.values()))
    return [Record(i + 1, {k: v[i] for k, v in doc.items()}) for i in range(n)]


def _array_items(text: str, doc: list[Any]) -> list[tuple[int, Any]]:
    """Each array item with the line it starts on (the file was parsed once already)."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = text.count("\n", 0, pos) + 1
    items = []
    for _ in doc:
        start = pos
        while text[pos] in " \t\r\n,":
            pos += 1
        line += text.count("\n", start, pos)
        obj, end = decoder.raw_decode(text, pos)
        items.append((line, obj))
        line += text.count("\n", pos, end)
        pos = end
    return items
