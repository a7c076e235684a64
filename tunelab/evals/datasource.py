"""Run data sources (contract-2 §15.5): where a run's rows come from, and how samples are made.

  jsonl        rows given with their samples (or without, when no criterion reads
               the sample): nothing is generated
  completions  each row's `input_messages` (a template over the item, or a reference
  responses    to a message list in the item) sent to `model` with `sampling_params`

Rows come inline (`source.type = file_content`) or from a file uploaded with purpose
`evals` (`file_id`; lines `{"item": {...}, "sample"?: {...}}`). Every row is checked
against the eval's item schema when the run is created, so a bad row is a 400
naming it, not a failed run.

tunelab extension: `item_reference` may point at a string instead of a message list;
the string is then the raw prompt (as /v1/completions sends it), which is how a
model fine-tuned on prompt/completion pairs is asked the way it was trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tunelab.errors import InvalidRequest
from tunelab.evals.criteria import Message, message_text, messages_echo
from tunelab.evals.templates import (
    Reference,
    check_against_schema,
    missing_field,
    normalise,
    parse_reference,
)

DEFAULT_MAX_COMPLETION_TOKENS = 256
SOURCE_TYPES = ("file_content", "file_id")
MESSAGE_ROLES = ("user", "assistant", "system", "developer")

# (project, file_id) -> the file's text; raises a 400 naming data_source.source.id.
ReadFile = Callable[[str, str], str]
# (project, model, param) -> None, or raises a 400 naming param.
ModelCheck = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Row:
    item: dict[str, Any]
    sample: dict[str, Any] | None


@dataclass(frozen=True)
class Sampling:
    """How a completions/responses run samples the model."""

    model: str
    template: tuple[Message, ...] | None  # input_messages.template
    reference: Reference | None  # input_messages.item_reference
    temperature: float | None
    top_p: float | None
    seed: int | None
    max_tokens: int
    json_mode: bool


@dataclass(frozen=True)
class Plan:
    kind: str  # jsonl | completions | responses
    file_id: str | None  # rows come from this file, else they are inline
    sampling: Sampling | None


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _schema_validator(schema: Mapping[str, Any]) -> Any:
    from jsonschema.validators import validator_for

    return validator_for(schema)(schema)


def check_item_schema(schema: Any, param: str) -> None:
    """400 unless `schema` is a valid JSON Schema for an object."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, Mapping):
        raise _bad(param, f"{param} must be a JSON Schema object.")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        raise _bad(
            param + where, f"{param}{where} is not a valid JSON Schema: {e.message}"
        ) from None
    if schema.get("type", "object") != "object":
        raise _bad(f"{param}.type", f"{param}.type must be 'object': each row's item is an object.")


def _check_row(raw: Any, param: str, validator: Any, needs_sample: bool) -> Row:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("item"), Mapping):
        raise _bad(param, f"{param} must be an object with an 'item' object.")
    error = next(iter(sorted(validator.iter_errors(raw["item"]), key=lambda e: e.path)), None)
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise _bad(
            f"{param}.item{where}",
            f"{param}.item{where} does not match the eval's item_schema: {error.message}.",
        )
    sample = raw.get("sample")
    if sample is not None and not isinstance(sample, Mapping):
        raise _bad(f"{param}.sample", f"{param}.sample must be an object.")
    if needs_sample and sample is None:
        raise _bad(
            f"{param}.sample",
            f"{param} has no 'sample', but the eval's criteria read {{{{sample.*}}}}; give each "
            "row a sample, or use a 'completions' data source to generate them.",
        )
    return Row(dict(raw["item"]), dict(sample) if sample is not None else None)


def file_rows(text: str, param: str) -> list[Any]:
    """The JSON objects of an evals JSONL file; a bad line is a 400 naming it."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            raise _bad(param, f"Line {n} of the file is not valid JSON ({e}).") from None
    return out


def check_rows(
    raw_rows: list[Any], param: str, item_schema: Mapping[str, Any], needs_sample: bool
) -> list[Row]:
    if not raw_rows:
        raise _bad(param, f"{param} has no rows.")
    validator = _schema_validator(item_schema)
    return [_check_row(r, f"{param}[{i}]", validator, needs_sample) for i, r in enumerate(raw_rows)]


def _sampling_params(raw: Any, kind: str, param: str) -> tuple[dict[str, Any], bool]:
    """(numbers as given, json_mode) from completions/responses sampling_params."""
    if raw is None:
        return {}, False
    if not isinstance(raw, Mapping):
        raise _bad(param, f"{param} must be an object.")
    fmt_key = "response_format" if kind == "completions" else "text"
    known = {"temperature", "top_p", "seed", "max_completion_tokens", "reasoning_effort", "tools"}
    for key in raw:
        if key not in known | {fmt_key}:
            raise _bad(f"{param}.{key}", f"{param}.{key} is not a {kind} sampling parameter.")
    if raw.get("reasoning_effort") is not None:
        raise _bad(
            f"{param}.reasoning_effort",
            "reasoning_effort applies to reasoning models; tunelab's models are not, so "
            "leave it out.",
        )
    if raw.get("tools"):
        raise _bad(
            f"{param}.tools", "Tools in eval sampling are not supported yet; leave tools out."
        )
    numbers: dict[str, Any] = {}
    for key, lo, hi, integer in (
        ("temperature", 0, 2, False),
        ("top_p", 0, 1, False),
        ("seed", 0, 2**63 - 1, True),
        ("max_completion_tokens", 1, 1 << 20, True),
    ):
        v = raw.get(key)
        if v is None:
            continue
        ok = not isinstance(v, bool) and isinstance(v, int if integer else int | float)
        if not ok or not lo <= v <= hi:
            kind_word = "an integer" if integer else "a number"
            raise _bad(f"{param}.{key}", f"{param}.{key} must be {kind_word} from {lo} to {hi}.")
        numbers[key] = v
    fmt = raw.get(fmt_key)
    if kind == "responses" and isinstance(fmt, Mapping):
        fmt = fmt.get("format")
        fmt_key = "text.format"
    fmt_type = fmt.get("type") if isinstance(fmt, Mapping) else None
    if fmt is not None and fmt_type not in ("text", "json_object"):
        raise _bad(
            f"{param}.{fmt_key}",
            f"{param}.{fmt_key} type {fmt_type!r} is not supported in evals yet; use 'text' or "
            "'json_object' (JSON mode).",
        )
    return numbers, fmt_type == "json_object"


def _input_messages(
    raw: Any, param: str, schema: Mapping[str, Any]
) -> tuple[tuple[Message, ...] | None, Reference | None, dict[str, Any]]:
    if not isinstance(raw, Mapping):
        raise _bad(param, f"{param} is required: a template of messages or an item_reference.")
    if raw.get("type") == "template":
        tmpl = raw.get("template")
        if not isinstance(tmpl, list) or not tmpl:
            raise _bad(
                f"{param}.template", f"{param}.template must be a non-empty list of messages."
            )
        messages = []
        for i, m in enumerate(tmpl):
            where = f"{param}.template[{i}]"
            if not isinstance(m, Mapping) or m.get("role") not in MESSAGE_ROLES:
                raise _bad(
                    f"{where}.role", f"{where}.role must be one of {', '.join(MESSAGE_ROLES)}."
                )
            text = normalise(message_text(m.get("content"), f"{where}.content"), f"{where}.content")
            check_against_schema(text, f"{where}.content", schema)
            messages.append(Message(str(m["role"]), text))
        echo = {"type": "template", "template": messages_echo(tuple(messages))}
        return tuple(messages), None, echo
    if raw.get("type") == "item_reference":
        named = raw.get("item_reference")
        where = f"{param}.item_reference"
        if not isinstance(named, str):
            raise _bad(where, f"{where} must name an item field, like 'item.messages'.")
        ref = parse_reference(named.strip().strip("{}").strip(), where)
        if ref.namespace != "item" or not ref.path:
            raise _bad(where, f"{where} must point into the item, like 'item.messages'.")
        missing = missing_field(schema, ref.path)
        if missing is not None:
            raise _bad(where, f"{where} names '{missing}', which the eval's item_schema lacks.")
        return None, ref, {"type": "item_reference", "item_reference": str(ref)}
    raise _bad(f"{param}.type", f"{param}.type must be 'template' or 'item_reference'.")


def parse_data_source(
    raw: Mapping[str, Any],
    item_schema: Mapping[str, Any],
    *,
    project: str,
    criteria_read_sample: bool,
    read_file: ReadFile,
    check_model: ModelCheck,
) -> tuple[Plan, dict[str, Any], list[Row]]:
    """(plan, the echo the run stores, the checked rows) — or a 400 naming the field."""
    param = "data_source"
    kind = raw.get("type")
    if kind not in ("jsonl", "completions", "responses"):
        raise _bad(
            f"{param}.type", f"{param}.type is {kind!r}; use 'jsonl', 'completions' or 'responses'."
        )
    source = raw.get("source")
    if not isinstance(source, Mapping) or source.get("type") not in SOURCE_TYPES:
        got = source.get("type") if isinstance(source, Mapping) else None
        raise _bad(
            f"{param}.source.type",
            f"{param}.source.type is {got!r}; tunelab reads rows from 'file_content' or "
            "'file_id' (stored completions and response logs are not kept).",
        )
    needs_sample = kind == "jsonl" and criteria_read_sample
    file_id: str | None = None
    if source["type"] == "file_content":
        content = source.get("content")
        rows = check_rows(
            content if isinstance(content, list) else [],
            f"{param}.source.content",
            item_schema,
            needs_sample,
        )
        source_echo: dict[str, Any] = {
            "type": "file_content",
            "content": [
                {"item": r.item, **({"sample": r.sample} if r.sample is not None else {})}
                for r in rows
            ],
        }
    else:
        given = source.get("id")
        if not isinstance(given, str):
            raise _bad(f"{param}.source.id", f"{param}.source.id must be a file id.")
        file_id = given
        text = read_file(project, file_id)
        rows = check_rows(
            file_rows(text, f"{param}.source.id"), f"{param}.source.id", item_schema, needs_sample
        )
        source_echo = {"type": "file_id", "id": file_id}
    echo: dict[str, Any] = {"type": kind, "source": source_echo}
    if kind == "jsonl":
        return Plan("jsonl", file_id, None), echo, rows
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise _bad(f"{param}.model", f"{param}.model is required for a {kind} data source.")
    check_model(project, model, f"{param}.model")
    template, reference, messages_echo_ = _input_messages(
        raw.get("input_messages"), f"{param}.input_messages", item_schema
    )
    numbers, json_mode = _sampling_params(
        raw.get("sampling_params"), str(kind), f"{param}.sampling_params"
    )
    sampling = Sampling(
        model=model,
        template=template,
        reference=reference,
        temperature=numbers.get("temperature"),
        top_p=numbers.get("top_p"),
        seed=numbers.get("seed"),
        max_tokens=numbers.get("max_completion_tokens", DEFAULT_MAX_COMPLETION_TOKENS),
        json_mode=json_mode,
    )
    echo.update(
        model=model,
        input_messages=messages_echo_,
        sampling_params=raw.get("sampling_params"),
    )
    return Plan(str(kind), file_id, sampling), echo, rows


def plan_from_echo(echo: Mapping[str, Any], item_schema: Mapping[str, Any]) -> Plan:
    """The plan of a stored run (its echo was checked when the run was created)."""
    kind = str(echo["type"])
    source = echo["source"]
    file_id = source.get("id") if source.get("type") == "file_id" else None
    if kind == "jsonl":
        return Plan(kind, file_id, None)
    template, reference, _ = _input_messages(echo["input_messages"], "input_messages", item_schema)
    numbers, json_mode = _sampling_params(echo.get("sampling_params"), kind, "sampling_params")
    return Plan(
        kind,
        file_id,
        Sampling(
            model=str(echo["model"]),
            template=template,
            reference=reference,
            temperature=numbers.get("temperature"),
            top_p=numbers.get("top_p"),
            seed=numbers.get("seed"),
            max_tokens=numbers.get("max_completion_tokens", DEFAULT_MAX_COMPLETION_TOKENS),
            json_mode=json_mode,
        ),
    )


def inline_rows(echo: Mapping[str, Any]) -> list[Row]:
    return [Row(dict(r["item"]), r.get("sample")) for r in echo["source"].get("content", [])]
