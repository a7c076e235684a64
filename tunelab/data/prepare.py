"""`tunelab prepare-data`: read a file, check it, offer fixes, write clean JSONL.

The flow of the legacy `prepare_data` tool (contract §3.3): analyse and print
what was found (necessary fixes are applied at once, errors stop the run), then
list the actions, asking `[Y/n]` for each recommended one, then write the result
and print the command that starts a fine-tuning job with it. Chat data (and
Alpaca / ShareGPT, converted to chat) goes through the same `Validator` as uploads
and jobs, then gets token statistics from the base model's tokenizer. A chat JSONL
file is streamed in several passes (validate, analyse, count, write), so its size
is bounded by disk, not memory; prompt/completion data is loaded whole, as the
legacy checks compare all rows.

All terminal I/O goes through a `Console` (the CLI passes a click-backed one).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tunelab.data import legacy
from tunelab.data.formats import detect_format, prompt_completion_to_chat
from tunelab.data.legacy import Remediation, Rows
from tunelab.data.output import train_valid_split, unique_path, write_jsonl
from tunelab.data.readers import ReadResult, Record, read_records
from tunelab.data.stats import STATS_SAMPLE, mask_segments, token_stats
from tunelab.data.stream import (
    CHAT_FORMATS,
    Examples,
    digest,
    is_chat_jsonl,
    jsonl_examples,
    without_duplicates,
)
from tunelab.data.text import UnreadableFile
from tunelab.data.validation import (
    FORMAT_NAMES,
    MIN_EXAMPLES,
    ValidationReport,
    Validator,
    validate_file,
)

PROBLEMS_SHOWN = 20
SOURCE_NAMES = {
    "alpaca": "Alpaca (instruction/input/output)",
    "sharegpt": "ShareGPT (conversations)",
}


class Console(Protocol):
    def echo(self, text: str = "") -> None: ...
    def ask(self, question: str) -> bool: ...  # [Y/n]: anything but n/N accepts
    def progress(self, total: int, label: str) -> Any: ...  # a context manager with .update(n)


@dataclass
class Options:
    path: Path
    model: str
    output: Path | None = None
    to_chat: bool = False
    show_masks: int = 0
    stats: bool = True


@dataclass
class Outcome:
    exit_code: int
    written: list[Path]


class Abort(Exception):
    """Stop the run: the message has been printed."""


def prepare(
    opts: Options, console: Console, load_tokenizer: Callable[[str], tuple[Any, int]]
) -> Outcome:
    """Run prepare-data; `load_tokenizer(model)` returns (tokenizer, context length)."""
    try:
        return _Run(opts, console, load_tokenizer).run()
    except Abort:
        return Outcome(1, [])


class _Run:
    def __init__(
        self, opts: Options, console: Console, load_tokenizer: Callable[[str], tuple[Any, int]]
    ):
        self.opts, self.c, self._load_tokenizer = opts, console, load_tokenizer
        self.remediations: list[Remediation] = []
        self.classification: Rows | None = None
        self.separator = self.stop = ""

    def run(self) -> Outcome:
        c = self.c
        c.echo("Analyzing...")
        if is_chat_jsonl(self.opts.path):
            return self._finish(self._chat_jsonl(self.opts.path))
        try:
            read = read_records(self.opts.path)
        except UnreadableFile as e:
            c.echo(f"\nERROR: {e}")
            raise Abort from None
        self._reading(read)
        validator = Validator()
        if read.bad_lines:
            # Report every problem in file order, as validate_file does.
            bad = dict(read.bad_lines)
            good = {r.line: r.obj for r in read.records}
            for line in sorted(bad.keys() | good.keys()):
                if line in bad:
                    validator.add_unreadable(line, bad[line])
                else:
                    validator.add(good[line], line)
            self._fail(validator.finish())
        if any(detect_format(r.obj) in CHAT_FORMATS for r in read.records):
            rows = Examples.of(self._validate(read.records, validator))
            return self._finish(self._chat(rows, validator.report))
        return self._finish(self._prompt_completion(read.records, validator))

    # -- analysis ---------------------------------------------------------------

    def _reading(self, read: ReadResult) -> None:
        msg = f"\n- Based on your file extension, your file is formatted as a {read.file_type} file"
        for note in read.notes:
            msg += f"\n- {note}"
        necessary = (
            f"Your format `{read.file_type}` will be converted to `JSONL`"
            if read.file_type != "JSONL"
            else None
        )
        if necessary is None and read.needs_conversion:
            necessary = "The file will be rewritten as UTF-8 JSONL"
        self._apply(Remediation("read_any_format", immediate_msg=msg, necessary_msg=necessary), [])

    def _apply(self, rem: Remediation, rows: Rows) -> Rows:
        """Pass 1 for one validator: print, stop on error, apply a necessary fix."""
        if rem.immediate_msg:
            self.c.echo(rem.immediate_msg.lstrip("\n"))
        if rem.error_msg:
            self.c.echo(f"\nERROR in {rem.name} validator: {rem.error_msg}\n\nAborting...")
            raise Abort
        if rem.necessary_fn is not None:
            rows = rem.necessary_fn(rows)
        self.remediations.append(rem)
        return rows

    def _validate(self, records: Sequence[Record], validator: Validator) -> Rows:
        """The records checked and converted (Alpaca/ShareGPT to chat), keeping their lines."""
        examples = []
        with self.c.progress(len(records), "Validating") as bar:
            for r in records:
                parsed = validator.add(r.obj, r.line)
                if parsed.example is not None:
                    examples.append(Record(r.line, parsed.example))
                bar.update(1)
        report = validator.finish()
        if not report.ok:
            self._fail(report)
        return examples

    def _fail(self, report: ValidationReport) -> None:
        self.c.echo(f"\nERROR: the file has {report.problem_count} problem(s):")
        for p in report.problems[:PROBLEMS_SHOWN]:
            self.c.echo(f"  {p}")
        if report.problem_count > PROBLEMS_SHOWN:
            self.c.echo(f"  ... and {report.problem_count - PROBLEMS_SHOWN} more")
        self.c.echo("\nFix these lines and run the command again. Aborting...")
        raise Abort

    def _chat_jsonl(self, path: Path) -> Examples[Record]:
        """A chat JSONL file, streamed: validated with validate_file itself, then analysed."""
        self._reading(ReadResult([], "JSONL"))
        with self.c.progress(path.stat().st_size, "Validating") as bar:
            done = [0]

            def advance(n_bytes: int) -> None:
                bar.update(n_bytes - done[0])
                done[0] = n_bytes

            report = validate_file(path, on_progress=advance)
        if not report.ok:
            self._fail(report)
        if report.encoding not in ("utf-8", "utf-8-sig"):
            self._apply(
                Remediation(
                    "encoding",
                    immediate_msg=(
                        f"- The file is encoded as {report.encoding}; the output will be UTF-8"
                    ),
                    necessary_msg="The file will be rewritten as UTF-8 JSONL",
                ),
                [],
            )
        return self._chat(jsonl_examples(path, report.n_examples), report)

    def _chat(self, examples: Examples[Record], report: ValidationReport) -> Examples[Record]:
        c = self.c
        c.echo(f"- Your file contains {len(examples)} chat examples")
        for fmt, n in report.source_formats.items():
            if fmt in SOURCE_NAMES:
                self._apply(
                    Remediation(
                        f"convert_{fmt}",
                        immediate_msg=f"- {n} examples are in {SOURCE_NAMES[fmt]} format",
                        necessary_msg=f"Convert {n} {SOURCE_NAMES[fmt]} examples to chat messages",
                    ),
                    [],
                )
        no_system = no_user = 0
        seen: set[bytes] = set()
        with c.progress(len(examples), "Analyzing") as bar:
            for r in examples:
                roles = {m.get("role") for m in r.obj["messages"]}
                no_system += "system" not in roles
                no_user += "user" not in roles
                seen.add(digest(r.obj))
                bar.update(1)
        for role, missing in (("system", no_system), ("user", no_user)):
            if missing:
                c.echo(f"- {missing} examples have no {role} message")
        dups = len(examples) - len(seen)
        if dups:
            c.echo(f"- There are {dups} duplicated examples")
            self.remediations.append(
                Remediation(
                    "duplicated_examples",
                    optional_msg=f"Remove {dups} duplicate examples",
                    optional_fn=lambda rows: without_duplicates(rows, len(seen)),
                )
            )
        return examples

    def _prompt_completion(self, records: Rows, validator: Validator) -> Rows:
        if not all(isinstance(r.obj, dict) for r in records):
            self._validate(records, validator)  # names the lines that are not objects
        rows = list(records)
        for check in legacy.STRUCTURE_VALIDATORS:
            rows = self._apply(check(rows), rows)
        self._validate(rows, validator)  # every value a string
        checks = legacy.CONTENT_VALIDATORS + (
            [] if self.opts.to_chat else legacy.TEXT_FORMAT_VALIDATORS
        )
        for check in checks:
            rows = self._apply(check(rows), rows)
        if legacy.task_type(rows) == "classification":
            self.classification = rows
        if self.opts.to_chat:
            self.remediations.append(
                Remediation(
                    "to_chat",
                    necessary_msg="Convert the prompt/completion pairs to chat messages "
                    "(user = prompt, assistant = completion)",
                )
            )
        return rows

    # -- actions, statistics, write-out -------------------------------------------

    def _finish(self, rows: Iterable[Record]) -> Outcome:
        c = self.c
        changed = False
        if any(r.optional_msg or r.necessary_msg for r in self.remediations):
            c.echo("\n\nBased on the analysis we will perform the following actions:")
            for rem in self.remediations:
                if rem.optional_msg and self.c.ask(f"- [Recommended] {rem.optional_msg} [Y/n]: "):
                    rows = rem.optional_fn(rows) if rem.optional_fn else rows
                    changed = True
                if rem.necessary_msg:
                    c.echo(f"- [Necessary] {rem.necessary_msg}")
                    changed = True
        else:
            c.echo("\n\nNo remediations found.")
        final: Sequence[dict[str, Any]] | Examples[dict[str, Any]]
        if isinstance(rows, Examples):
            final = rows.objs()
        else:
            final = [r.obj for r in rows]
            if self.opts.to_chat:
                final = [prompt_completion_to_chat(ex["prompt"], ex["completion"]) for ex in final]
            self._suffixes(final)
        if self.opts.stats or self.opts.show_masks:
            self._statistics(final)
        split = (
            isinstance(final, list)
            and self.classification is not None
            and self.c.ask(
                "- [Recommended] Would you like to split into training and validation set? [Y/n]: "
            )
        )
        written = self._write(final, split) if changed or split else []
        if changed and not written:
            return Outcome(0, [])
        train = written[0] if written else self.opts.path
        self._next_steps(train, written[1] if split else None)
        if len(final) < MIN_EXAMPLES:
            c.echo(
                f"\nERROR: Training file has {len(final)} example(s), but must have at least "
                f"{MIN_EXAMPLES} examples; a fine-tuning job would fail. Add more examples."
            )
            return Outcome(1, written)
        return Outcome(0, written)

    def _suffixes(self, final: list[dict[str, Any]]) -> None:
        if (
            final
            and "prompt" in final[0]
            and legacy.task_type([Record(0, ex) for ex in final]) != "open-ended generation"
        ):
            self.separator = legacy.common_suffix([ex["prompt"] for ex in final])
            if self.classification is None:
                self.stop = legacy.common_suffix([ex["completion"] for ex in final])

    def _statistics(self, final: Sequence[dict[str, Any]] | Examples[dict[str, Any]]) -> None:
        c = self.c
        tokenizer, context = self._load_tokenizer(self.opts.model)
        if not self.opts.stats:
            self._show_masks(tokenizer, final)
            return
        with c.progress(min(len(final), STATS_SAMPLE), "Counting tokens") as bar:
            stats = token_stats(
                tokenizer, final, len(final), context=context, on_example=lambda: bar.update(1)
            )
        c.echo(f"\nStatistics ({FORMAT_NAMES['chat' if stats.messages else 'prompt_completion']}):")
        for line in stats.lines(self.opts.model):
            c.echo(line)
        self._show_masks(tokenizer, final)

    def _show_masks(self, tokenizer: Any, final: Iterable[dict[str, Any]]) -> None:
        c = self.c
        for i, ex in enumerate(itertools.islice(final, self.opts.show_masks), 1):
            segments = mask_segments(tokenizer, ex)
            n = sum(len(t) for t, on in segments if on)
            c.echo(
                f"\nExample {i} as the model sees it; the loss is computed on the {n} "
                "characters in [[...]]:"
            )
            c.echo("".join(f"[[{text}]]" if on else text for text, on in segments))

    def _write(
        self, final: Sequence[dict[str, Any]] | Examples[dict[str, Any]], split: bool
    ) -> list[Path]:
        if not self.c.ask("\nYour data will be written to a new JSONL file. Proceed [Y/n]: "):
            self.c.echo("Aborting... did not write the file")
            return []
        source = self.opts.path
        base = (self.opts.output or source.with_name(source.stem + "_prepared.jsonl")).with_suffix(
            ""
        )
        parts: list[tuple[str, Iterable[dict[str, Any]]]]
        if split:
            parts = list(zip(("_train", "_valid"), train_valid_split(list(final)), strict=True))
        else:
            parts = [("", final)]
        written = []
        with self.c.progress(len(final), "Writing") as bar:
            for tag, examples in parts:
                path = unique_path(Path(f"{base}{tag}.jsonl"), source)
                written.append(write_jsonl(path, _counting(examples, bar)))
                self.c.echo(f"\nWrote modified file to `{path}`")
        return written

    def _next_steps(self, train: Path, valid: Path | None) -> None:
        c = self.c
        cmd = f'tunelab jobs create -t "{train}"'
        if valid is not None:
            cmd += f' -v "{valid}"'
        cmd += f" -m {self.opts.model}"
        c.echo(f"\nNow use that file when fine-tuning:\n> {cmd}")
        if self.separator:
            c.echo(
                f"\nAfter you've fine-tuned a model, remember that your prompt has to end with the "
                f"indicator string `{legacy.show(self.separator)}` for the model to start "
                "generating "
                "completions, rather than continuing with the prompt."
            )
        if self.stop:
            c.echo(
                f'Make sure to include `stop=["{legacy.show(self.stop)}"]` so that the '
                "generated texts ends at the expected place."
            )
        if self.classification is not None:
            counts = legacy.classes(self.classification)
            top = counts.most_common(1)[0][0]
            c.echo(
                f"\nThis looks like classification with {len(counts)} classes "
                f'(most frequent: "{top}"). Keep the validation file aside and compare the '
                "model's "
                "answers on it with the expected completions to measure accuracy."
            )


def _counting(items: Iterable[Any], bar: Any) -> Iterator[Any]:
    for item in items:
        bar.update(1)
        yield item
