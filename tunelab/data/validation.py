"""The fine-tuning file validator: one verdict for upload, job creation and prepare-data.

`validate_file` streams a JSONL file line by line (bounded memory, a progress
callback) through a `Validator`; `tunelab prepare-data` feeds the examples it read
from CSV/XLSX/JSON through the same `Validator`, so all three doors agree.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.formats import Issue, Parsed, json_type, parse_example
from tunelab.data.text import UnreadableFile, file_encoding, iter_lines
from tunelab.errors import InvalidRequest

MIN_EXAMPLES = 10
# Problems kept in a report; the rest are only counted, so a file with a million
# bad lines still validates in bounded memory.
MAX_PROBLEMS = 100
_decode = json.JSONDecoder().decode  # json.loads minus its per-call argument handling
FORMAT_NAMES = {"chat": "chat messages", "prompt_completion": "prompt/completion pairs"}


@dataclass
class Problem:
    line: int | None  # 1-based line number in the file, None for file-level problems
    message: str
    example: int | None = None  # 1-based example number, when it differs from the line
    message_index: int | None = None  # 1-based index in "messages"
    field: str | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        where = f"Line {self.line}"
        if self.example is not None and self.example != self.line:
            where += f" (example {self.example})"
        if self.message_index is not None:
            where += f", message {self.message_index}"
        if self.field:
            where += f', field "{self.field}"'
        return f"{where}: {self.message}"


@dataclass
class ValidationReport:
    n_examples: int = 0  # examples that passed every check
    format: str | None = None  # "chat" | "prompt_completion"
    problems: list[Problem] = field(default_factory=list)  # the first MAX_PROBLEMS
    problem_count: int = 0
    source_formats: Counter[str] = field(default_factory=Counter)  # chat/alpaca/sharegpt/...
    n_lines: int = 0
    n_bytes: int = 0
    encoding: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def too_few(self) -> bool:
        return self.ok and self.n_examples < MIN_EXAMPLES

    @property
    def too_few_message(self) -> str:
        return (
            f"Training file has {self.n_examples} example(s), "
            f"but must have at least {MIN_EXAMPLES} examples"
        )

    def job_error(self, param: str = "training_file") -> tuple[str, str] | None:
        """(code, message) for a fine-tuning job's `error`, or None if the file is usable.

        Codes and wording follow OpenAI's (contract §1.5, §2.10); the example-count
        rule applies to the training file only.
        """
        if not self.ok:
            kind = "validation" if param == "validation_file" else "training"
            return (
                f"invalid_{kind}_file",
                f"The job failed due to an invalid {kind} file. {self.summary()}",
            )
        if param == "training_file" and self.too_few:
            return "invalid_n_examples", self.too_few_message
        return None

    def summary(self, limit: int = 5) -> str:
        """A one-paragraph message naming the first problems and their lines."""
        if self.ok:
            return self.too_few_message if self.too_few else ""
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = self.problem_count - min(limit, len(self.problems))
        return shown + (f" (and {more} more problems)" if more > 0 else "")

    def add_problem(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


class Validator:
    """Checks examples one at a time and accumulates one report."""

    def __init__(self) -> None:
        self.report = ValidationReport()
        self._kind: str | None = None  # chat | prompt_completion: the file's format
        self._kind_line = 0  # the line that set it
        self._examples_seen = 0

    def add(self, obj: Any, line: int) -> Parsed:
        """Check one parsed example found at `line`; return it detected and converted."""
        self._examples_seen += 1
        parsed = parse_example(obj)
        for issue in parsed.issues:
            self._add_issue(issue, line)
        kind = parsed.kind
        if kind is not None:
            self.report.source_formats[parsed.format or kind] += 1
            if self._kind is None:
                self._kind, self._kind_line = kind, line
            elif kind != self._kind and parsed.example is not None:
                self._add_issue(
                    Issue(
                        f"this example is {FORMAT_NAMES[kind]} but line {self._kind_line} is "
                        f"{FORMAT_NAMES[self._kind]}; a file must use one format, so put each "
                        "format in its own file"
                    ),
                    line,
                )
                parsed.example = None
        if parsed.example is not None:
            self.report.n_examples += 1
        return parsed

    def add_unreadable(self, line: int, message: str) -> None:
        """A line that could not be parsed at all (bad JSON, bad encoding)."""
        self._examples_seen += 1
        self._add_issue(Issue(message), line)

    def _add_issue(self, issue: Issue, line: int) -> None:
        self.report.add_problem(
            Problem(line, issue.message, self._examples_seen, issue.message_index, issue.field)
        )

    def finish(self) -> ValidationReport:
        report = self.report
        report.format = self._kind
        if report.ok and self._examples_seen == 0:
            report.add_problem(Problem(None, "The file has no examples: it is empty."))
        return report


def validate_file(
    path: Path, *, on_progress: Callable[[int], None] | None = None
) -> ValidationReport:
    """Validate a JSONL fine-tuning file; `on_progress(n_bytes)` is called as it reads."""
    validator = Validator()
    report = validator.report
    try:
        report.encoding = file_encoding(Path(path))
        for ln in iter_lines(Path(path), encoding=report.encoding):
            report.n_lines = ln.number
            report.n_bytes += ln.nbytes
            if on_progress is not None and ln.number % 4096 == 0:
                on_progress(report.n_bytes)
            if ln.text is None:
                validator.add_unreadable(ln.number, ln.error or "the line cannot be read")
                continue
            if not ln.text or ln.text.isspace():
                continue
            try:
                obj = _decode(ln.text)
            except ValueError as e:
                validator.add_unreadable(ln.number, json_error_message(ln.text, e))
                continue
            if isinstance(obj, list) and ln.number == 1:
                validator.add_unreadable(
                    ln.number,
                    (
                        f"expected a JSON object, got {json_type(obj)}; a JSONL file has one JSON "
                        "object per line (`tunelab prepare-data` converts a JSON array)"
                    ),
                )
                continue
            validator.add(obj, ln.number)
    except UnreadableFile as e:
        report.add_problem(Problem(None, str(e)))
    except OSError as e:
        report.add_problem(Problem(None, f"The file cannot be read: {e.strerror or e}."))
    if on_progress is not None:
        on_progress(report.n_bytes)
    return validator.finish()


def looks_like_jsonl(path: Path, *, sample: int = 5) -> bool:
    """Whether the file is JSON Lines at all: one of its first `sample` non-blank
    lines is a JSON object.

    Tells a CSV, a spreadsheet or a JSON array apart from a JSONL file with some
    bad lines (which gets a line-by-line report instead). Unreadable or empty
    files count as JSONL here, so the validator's report says what is wrong."""
    seen = 0
    try:
        for ln in iter_lines(Path(path)):
            if ln.text is None:
                return True
            if not ln.text or ln.text.isspace():
                continue
            try:
                if isinstance(_decode(ln.text), dict):
                    return True
            except ValueError:
                pass
            seen += 1
            if seen == sample:
                return False
    except (UnreadableFile, OSError):
        return True
    return seen == 0


def upload_verdict(path: Path) -> tuple[str, str | None]:
    """(status, status_details) of a `fine-tune` upload, judged by its content
    whatever it is called: openai 0.28 names every upload `file`, and raw bytes
    have no name at all. A file that is not JSON Lines at all is refused."""
    if not looks_like_jsonl(path):
        raise InvalidRequest(
            "Invalid file format for Fine-Tuning API. Must be .jsonl, one JSON object per line "
            "(convert CSV/XLSX/JSON first with `tunelab prepare-data -f FILE`).",
            param="file",
        )
    report = validate_file(path)
    return ("processed", None) if report.ok else ("error", report.summary())


def json_error_message(text: str, e: ValueError) -> str:
    stripped = text.lstrip()
    if stripped.startswith("[") or (
        stripped.startswith("{") and not stripped.rstrip().endswith("}")
    ):
        hint = (
            "each line must be one complete JSON object; a JSON document spread over several "
            "lines is not JSONL (`tunelab prepare-data` converts it)"
        )
    else:
        hint = "each line must be one JSON object"
    detail = getattr(e, "msg", str(e))
    col = getattr(e, "colno", None)
    return f"not valid JSON ({detail}{f' at column {col}' if col else ''}); {hint}"
