"""The fine-tuning file validator: one verdict for upload, job creation and prepare-data.

This is the basic check (each line a JSON object in a known format); the
data-preparation issue replaces the body of `validate_file` with the full validator,
keeping its signature and the report's shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

MIN_EXAMPLES = 10


@dataclass
class Problem:
    line: int | None  # 1-based line number in the file, None for file-level problems
    message: str

    def __str__(self) -> str:
        return f"Line {self.line}: {self.message}" if self.line else self.message


@dataclass
class ValidationReport:
    n_examples: int = 0
    format: str | None = None  # "chat" | "prompt_completion"
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def too_few(self) -> bool:
        return self.ok and self.n_examples < MIN_EXAMPLES

    def summary(self, limit: int = 5) -> str:
        """A one-paragraph message naming the first problems and their lines."""
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = len(self.problems) - limit
        return shown + (f" (and {more} more problems)" if more > 0 else "")


def validate_file(path: Path) -> ValidationReport:
    from tunelab.data.examples import normalise

    report = ValidationReport()
    formats: set[str] = set()
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    ex = normalise(json.loads(line))
                except (ValueError, json.JSONDecodeError) as e:
                    report.problems.append(Problem(lineno, str(e)))
                    continue
                formats.add("chat" if "messages" in ex else "prompt_completion")
                report.n_examples += 1
    except UnicodeDecodeError:
        report.problems.append(Problem(None, "The file is not UTF-8 text."))
    if len(formats) > 1:
        report.problems.append(Problem(None, "The file mixes chat and prompt/completion lines."))
    report.format = formats.pop() if len(formats) == 1 else None
    if not report.problems and report.n_examples == 0:
        report.problems.append(Problem(None, "The file has no examples."))
    return report
