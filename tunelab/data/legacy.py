"""The legacy `prepare_data` checks and fixes for prompt/completion data.

The same validators, in the same order and with the same triggers as OpenAI's
legacy tool (reference/openai-contract.md §3.3.2). Each returns a `Remediation`:
an immediate message, a necessary fix (applied at once), an optional fix (offered
with a [Y/n] question later) or an error that stops the run. Rows are `Record`s,
so messages name the file's line numbers rather than dataframe indices.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tunelab.data.readers import Record

Rows = list[Record]
Fix = Callable[[Rows], Rows]
# A recommended fix runs at the end, on the rows as loaded (a list) or on a
# re-readable stream of a chat JSONL file (data.stream.Examples).
OptionalFix = Callable[[Iterable[Record]], Iterable[Record]]

MIN_RECOMMENDED_EXAMPLES = 100
CLASSIFICATION_THRESHOLD = 3  # fewer distinct completions than rows/3 -> classification
LONG_EXAMPLE_CHARS = 10_000
MAX_PROMPT_PREFIX = 12
MIN_COMPLETION_PREFIX = 5
LONG_XFIX = 10
PROMPT_SEPARATORS = [
    " ->",
    "\n\n###\n\n",
    "\n\n===\n\n",
    "\n\n---\n\n",
    "\n\n===>\n\n",
    "\n\n--->\n\n",
]
FALLBACK_SEPARATOR = "\n\n### =>\n\n"
STOP_SEQUENCES = ["\n", ".", " END", "***", "+++", "&&&", "$$$", "@@@", "%%%"]
FALLBACK_STOP = " [END]"


@dataclass
class Remediation:
    name: str
    immediate_msg: str | None = None
    necessary_msg: str | None = None
    necessary_fn: Fix | None = None
    optional_msg: str | None = None
    optional_fn: OptionalFix | None = None
    error_msg: str | None = None


def show(s: str) -> str:
    """A separator or stop sequence as the user would type it."""
    return s.replace("\n", "\\n")


def lines(rows: Rows) -> str:
    shown = ", ".join(str(r.line) for r in rows[:20])
    return shown + (f" and {len(rows) - 20} more" if len(rows) > 20 else "")


def columns(rows: Rows) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r.obj))
    return list(seen)


def task_type(rows: Rows) -> str:
    if sum(len(r.obj["prompt"]) for r in rows) == 0:
        return "open-ended generation"
    if len({r.obj["completion"] for r in rows}) < len(rows) / CLASSIFICATION_THRESHOLD:
        return "classification"
    return "conditional generation"


def common_prefix(values: list[str]) -> str:
    return os.path.commonprefix(values)  # noqa: RUF071 (strings, not paths)


def common_suffix(values: list[str]) -> str:
    return os.path.commonprefix([v[::-1] for v in values])[::-1]  # noqa: RUF071


def _map(rows: Iterable[Record], column: str, fn: Callable[[str], str]) -> Rows:
    return [Record(r.line, {**r.obj, column: fn(r.obj[column])}) for r in rows]


def num_examples(rows: Rows) -> Remediation:
    msg = f"\n- Your file contains {len(rows)} prompt-completion pairs"
    if len(rows) < MIN_RECOMMENDED_EXAMPLES:
        msg += (
            ". In general, we recommend having at least a few hundred examples. We've found that "
            "performance tends to linearly increase for every doubling of the number of examples"
        )
    return Remediation("num_examples", immediate_msg=msg)


def necessary_column(rows: Rows, column: str) -> Remediation:
    cols = columns(rows)
    if column in cols:
        return Remediation(f"necessary_{column}")
    original = next((c for c in cols if str(c).lower() == column), None)
    if original is None:
        return Remediation(
            f"necessary_{column}",
            error_msg=(
                f"`{column}` column/key is missing (the file has: {', '.join(map(str, cols))}). "
                "Please make sure you name your columns/keys appropriately, then retry"
            ),
        )

    def rename(rows: Rows) -> Rows:
        return [
            Record(r.line, {(column if k == original else k): v for k, v in r.obj.items()})
            for r in rows
        ]

    return Remediation(
        f"necessary_{column}",
        immediate_msg=f"\n- The `{column}` column/key should be lowercase",
        necessary_msg=f"Lower case column name to `{column}`",
        necessary_fn=rename,
    )


def additional_column(rows: Rows) -> Remediation:
    extra = [c for c in columns(rows) if c not in ("prompt", "completion")]
    if not extra:
        return Remediation("additional_column")
    msg = (
        "\n- The input file should contain exactly two columns/keys per row. "
        f"Additional columns/keys present are: {extra}"
    )
    # The legacy tool warned for every column (each matched itself); warn only for
    # columns whose names really resemble prompt/completion.
    for c in extra:
        for keep in ("prompt", "completion"):
            if keep in str(c).lower():
                msg += (
                    "\n  WARNING: Some of the additional columns/keys contain "
                    f"`{keep}` in their name. These will be ignored"
                )

    def drop(rows: Rows) -> Rows:
        return [
            Record(r.line, {k: r.obj.get(k, "") for k in ("prompt", "completion")}) for r in rows
        ]

    return Remediation(
        "additional_column",
        immediate_msg=msg,
        necessary_msg=f"Remove additional columns/keys: {extra}",
        necessary_fn=drop,
    )


def non_empty_completion(rows: Rows) -> Remediation:
    empty = [r for r in rows if r.obj.get("completion") in ("", None)]
    if not empty:
        return Remediation("non_empty_completion")
    drop_lines = {r.line for r in empty}
    return Remediation(
        "non_empty_completion",
        immediate_msg=(
            "\n- `completion` column/key should not contain empty strings. "
            f"These are rows on lines: {lines(empty)}"
        ),
        necessary_msg=f"Remove {len(empty)} rows with empty completions",
        necessary_fn=lambda rows: [r for r in rows if r.line not in drop_lines],
    )


def format_inferrer(rows: Rows) -> Remediation:
    if task_type(rows) != "classification":
        return Remediation("format_inferrer")
    return Remediation(
        "format_inferrer",
        immediate_msg=(
            "\n- Based on your data it seems like you're trying to fine-tune a model for "
            "classification"
            "\n- For classification, we recommend you try one of the faster and cheaper "
            "models, such as "
            "`smollm2-135m-instruct`"
            "\n- For classification, you can estimate the expected model performance by "
            "keeping a held "
            "out dataset, which is not used for training"
        ),
    )


def duplicated_rows(rows: Rows) -> Remediation:
    seen: set[tuple[str, str]] = set()
    dups = []
    for r in rows:
        key = (r.obj["prompt"], r.obj["completion"])
        if key in seen:
            dups.append(r)
        seen.add(key)
    if not dups:
        return Remediation("duplicated_rows")
    drop_lines = {r.line for r in dups}
    return Remediation(
        "duplicated_rows",
        immediate_msg=(
            f"\n- There are {len(dups)} duplicated prompt-completion sets. "
            f"These are rows on lines: {lines(dups)}"
        ),
        optional_msg=f"Remove {len(dups)} duplicate rows",
        optional_fn=lambda rows: [r for r in rows if r.line not in drop_lines],
    )


def long_examples(rows: Rows) -> Remediation:
    if task_type(rows) == "open-ended generation":
        return Remediation("long_examples")
    long = [r for r in rows if len(r.obj["prompt"]) + len(r.obj["completion"]) > LONG_EXAMPLE_CHARS]
    if not long:
        return Remediation("long_examples")
    drop_lines = {r.line for r in long}
    return Remediation(
        "long_examples",
        immediate_msg=(
            f"\n- There are {len(long)} examples that are very long (over {LONG_EXAMPLE_CHARS:,} "
            f"characters). These are rows on lines: {lines(long)}\nFor conditional generation, and "
            "for classification the examples shouldn't be longer than the model's context; longer "
            "examples are truncated in training"
        ),
        optional_msg=f"Remove {len(long)} long examples",
        # By line, not position: earlier fixes may have removed rows.
        optional_fn=lambda rows: [r for r in rows if r.line not in drop_lines],
    )


def lower_case(rows: Rows, column: str) -> Remediation:
    text = "".join(r.obj[column] for r in rows)
    upper = sum(c.isupper() for c in text)
    lower = sum(c.islower() for c in text)
    if upper * 2 <= lower:
        return Remediation(f"lower_case_{column}")
    return Remediation(
        f"lower_case_{column}",
        immediate_msg=(
            f"\n- More than a third of your `{column}` column/key is uppercase. Uppercase "
            f"{column}s "
            "tends to perform worse than a mixture of case encountered in normal language. We "
            "recommend to lower case the data if that makes sense in your domain"
        ),
        optional_msg=f"Lowercase all your data in column/key `{column}`",
        optional_fn=lambda rows: _map(rows, column, str.lower),
    )


def _first_absent(
    options: list[str], values: list[str], fallback: str, *, skip: Callable[[str], bool]
) -> str:
    return next((o for o in options if not skip(o) and not any(o in v for v in values)), fallback)


def common_prompt_suffix(rows: Rows) -> Remediation:
    prompts = [r.obj["prompt"] for r in rows]
    multiline = any("\n" in p for p in prompts)
    suggested = _first_absent(
        PROMPT_SEPARATORS, prompts, FALLBACK_SEPARATOR, skip=lambda o: o == " ->" and multiline
    )
    if task_type(rows) == "open-ended generation":
        return Remediation("common_suffix")
    suffix = common_suffix(prompts)
    if all(p == suffix for p in prompts):
        return Remediation(
            "common_suffix",
            error_msg=(
                f"All prompts are identical: `{suffix}`\nConsider leaving the prompts blank if "
                "you want "
                "to do open-ended generation, otherwise ensure prompts are different"
            ),
        )
    if not suffix:
        return Remediation(
            "common_suffix",
            immediate_msg=(
                "\n- Your data does not contain a common separator at the end of your prompts. "
                "Having "
                "a separator string appended to the end of the prompt makes it clearer to the "
                "fine-tuned model where the completion should begin. If you intend to do "
                "open-ended "
                "generation, then you should leave the prompts empty"
            ),
            optional_msg=f"Add a suffix separator `{show(suggested)}` to all prompts",
            optional_fn=lambda rows: _map(rows, "prompt", lambda p: p + suggested),
        )
    msg = f"\n- All prompts end with suffix `{show(suffix)}`"
    if len(suffix) > LONG_XFIX:
        msg += (
            ". This suffix seems very long. Consider replacing with a shorter suffix, "
            f"such as `{show(suggested)}`"
        )
    if any(suffix in p[: -len(suffix)] for p in prompts):
        msg += (
            f"\n  WARNING: Some of your prompts contain the suffix `{show(suffix)}` more than "
            "once. "
            "We strongly suggest that you review your prompts and add a unique suffix"
        )
    return Remediation("common_suffix", immediate_msg=msg)


def common_prompt_prefix(rows: Rows) -> Remediation:
    prompts = [r.obj["prompt"] for r in rows]
    prefix = common_prefix(prompts)
    # All-identical prompts are the suffix validator's error.
    if not prefix or all(p == prefix for p in prompts):
        return Remediation("common_prefix")
    msg = f"\n- All prompts start with prefix `{show(prefix)}`"
    if len(prefix) <= MAX_PROMPT_PREFIX:
        return Remediation("common_prefix", immediate_msg=msg)
    return Remediation(
        "common_prefix",
        immediate_msg=msg
        + (
            ". Fine-tuning doesn't require the instruction specifying the task, or a few-shot "
            "example scenario. Most of the time you should only add the input data into the "
            "prompt, and the desired output into the completion"
        ),
        optional_msg=f"Remove prefix `{show(prefix)}` from all prompts",
        optional_fn=lambda rows: _map(rows, "prompt", lambda p: p[len(prefix) :]),
    )


def common_completion_prefix(rows: Rows) -> Remediation:
    completions = [r.obj["completion"] for r in rows]
    prefix = common_prefix(completions)
    if len(prefix) < MIN_COMPLETION_PREFIX or all(c == prefix for c in completions):
        return Remediation("common_completion_prefix")
    # A leading space helps tokenization, so stripping the prefix keeps one.
    keep = " " if prefix.startswith(" ") else ""
    return Remediation(
        "common_completion_prefix",
        immediate_msg=(
            f"\n- All completions start with prefix `{show(prefix)}`. Most of the time you should "
            "only add the output data into the completion, without any prefix"
        ),
        optional_msg=f"Remove prefix `{show(prefix)}` from all completions",
        optional_fn=lambda rows: _map(rows, "completion", lambda c: keep + c[len(prefix) :]),
    )


def common_completion_suffix(rows: Rows) -> Remediation:
    if task_type(rows) in ("open-ended generation", "classification"):
        return Remediation("common_completion_suffix")
    completions = [r.obj["completion"] for r in rows]
    suggested = _first_absent(STOP_SEQUENCES, completions, FALLBACK_STOP, skip=lambda o: False)
    suffix = common_suffix(completions)
    if all(c == suffix for c in completions):
        return Remediation(
            "common_completion_suffix",
            error_msg=(
                f"All completions are identical: `{suffix}`\nEnsure completions are different, "
                f"otherwise the model will just repeat `{suffix}`"
            ),
        )
    if not suffix:
        return Remediation(
            "common_completion_suffix",
            immediate_msg=(
                "\n- Your data does not contain a common ending at the end of your completions. "
                "Having a common ending string appended to the end of the completion makes it "
                "clearer to the fine-tuned model where the completion should end"
            ),
            optional_msg=f"Add a suffix ending `{show(suggested)}` to all completions",
            optional_fn=lambda rows: _map(rows, "completion", lambda c: c + suggested),
        )
    msg = f"\n- All completions end with suffix `{show(suffix)}`"
    if len(suffix) > LONG_XFIX:
        msg += (
            ". This suffix seems very long. Consider replacing with a shorter suffix, "
            f"such as `{show(suggested)}`"
        )
    if any(suffix in c[: -len(suffix)] for c in completions):
        msg += (
            f"\n  WARNING: Some of your completions contain the suffix `{show(suffix)}` more than "
            "once. We suggest that you review your completions and add a unique ending"
        )
    return Remediation("common_completion_suffix", immediate_msg=msg)


def completions_space_start(rows: Rows) -> Remediation:
    completions = [r.obj["completion"] for r in rows]
    if len({c[:1] for c in completions}) == 1 and completions[0].startswith(" "):
        return Remediation("completion_space_start")
    return Remediation(
        "completion_space_start",
        immediate_msg=(
            "\n- The completion should start with a whitespace character (` `). This tends to "
            "produce better results due to the tokenization we use"
        ),
        optional_msg="Add a whitespace character to the beginning of the completion",
        optional_fn=lambda rows: _map(
            rows, "completion", lambda c: c if c.startswith(" ") else " " + c
        ),
    )


# In the legacy tool's order. The first four make every row a {prompt, completion}
# of strings (the caller checks types after them); the rest may assume it.
STRUCTURE_VALIDATORS: list[Callable[[Rows], Remediation]] = [
    num_examples,
    lambda rows: necessary_column(rows, "prompt"),
    lambda rows: necessary_column(rows, "completion"),
    additional_column,
]
CONTENT_VALIDATORS: list[Callable[[Rows], Remediation]] = [
    non_empty_completion,
    format_inferrer,
    duplicated_rows,
    long_examples,
    lambda rows: lower_case(rows, "prompt"),
    lambda rows: lower_case(rows, "completion"),
]
# Only meaningful when training on raw text; skipped when converting to chat.
TEXT_FORMAT_VALIDATORS: list[Callable[[Rows], Remediation]] = [
    common_prompt_suffix,
    common_prompt_prefix,
    common_completion_prefix,
    common_completion_suffix,
    completions_space_start,
]


def classes(rows: Rows) -> Counter[str]:
    return Counter(r.obj["completion"] for r in rows)
