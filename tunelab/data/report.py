"""A fine-tuning file's report: the validator's verdict, token statistics, a masked preview.

The dashboard shows this before a job is created, so every part comes from the
code that the job itself runs: `validate_file` (the verdict upload, job creation
and prepare-data share), `token_stats` (the `auto` epochs, billed tokens and time
estimate of prepare-data) and `mask_segments` (the trained tokens, from the same
encoding the training loop uses).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.data.stats import TokenStats, mask_segments, token_stats
from tunelab.data.text import iter_lines
from tunelab.data.validation import ValidationReport, Validator, validate_file

# A report answers a click, so its statistics come from an evenly spaced sample of
# at most this many examples (scaled up, as prepare-data does above its own cap).
REPORT_SAMPLE = 2_000


@dataclass
class MaskedExample:
    line: int  # 1-based line in the file
    segments: list[tuple[str, bool]]  # (text, trained) runs, in order


@dataclass
class FileReport:
    validation: ValidationReport
    stats: TokenStats | None  # None when no example passed the checks
    preview: list[MaskedExample]


def usable_examples(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, normalised example) for every line that passes the validator; the
    others are skipped (the validation report lists them)."""
    validator = Validator()
    for ln in iter_lines(Path(path)):
        if not ln.text or ln.text.isspace():
            continue
        try:
            obj = json.loads(ln.text)
        except ValueError:
            continue
        example = validator.add(obj, ln.number).example
        if example is not None:
            yield ln.number, example


def file_report(
    path: Path, tokenizer: Any, context: int, *, preview: int = 3, sample: int = REPORT_SAMPLE
) -> FileReport:
    """Validate `path` and, if any example is usable, count its tokens with
    `tokenizer` (whose model has `context` tokens) and mask its first `preview`
    examples."""
    validation = validate_file(path)
    if validation.n_examples == 0:
        return FileReport(validation, None, [])
    stats = token_stats(
        tokenizer,
        (example for _, example in usable_examples(path)),
        validation.n_examples,
        context=context,
        sample=sample,
    )
    masked = [
        MaskedExample(line, mask_segments(tokenizer, example))
        for line, example in itertools.islice(usable_examples(path), preview)
    ]
    return FileReport(validation, stats, masked)
