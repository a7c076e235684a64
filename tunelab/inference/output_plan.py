"""What a chat answer must look like, as one grammar: text, JSON for a schema
(`response_format` / Responses' `text.format`), tool calls, or a mix.

    plan = output_plan(tools=tool_plan, schema=schema)
    plan.grammar      # llguidance grammar text, or None for free text
    plan.parser()     # reads the generated text back (content, tool calls)

The grammar's alternatives, in lark:

    start: answer | calls                           (a schema, tools on "auto")
    start: TEXT | calls                             (tools on "auto", no schema)
    start: calls                                    ("required" or a named tool)
    start: TEXT                                     (tools offered with "none")

`TEXT` is any text that does not start with `<tool_call>`; `answer` is a JSON
value for the schema; each call is `<tool_call>\\n{"name": "<name>",
"arguments": <JSON for that function's parameters>}\\n</tool_call>`, the form
`data.chat_render` renders calls in for training and prompts.

`refusal` stays null: a refusal branch in the grammar (`<refusal>` + text, the
form training renders an assistant `refusal` in) was tried, and a base model
that wants to answer in prose takes it whenever prose is masked out, so a
structured answer would turn into a "refusal" for no reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.data.chat_render import CALL_CLOSE, CALL_OPEN
from tunelab.errors import InvalidRequest
from tunelab.inference.grammars import JSON_OBJECT_SCHEMA, check_schema, lark_json, validate
from tunelab.inference.tool_calls import OutputParser, ParsedOutput, ToolPlan, parse_output

_TEXT_RULE = r"TEXT: /(?s:.*)/ & ~/<tool_call>(?s:.*)/"


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True)
class OutputPlan:
    grammar: str | None
    tools: ToolPlan | None = None

    @property
    def calls(self) -> bool:
        return self.tools is not None and self.tools.may_call

    def parser(self) -> OutputParser:
        return OutputParser(calls=self.calls)

    def parse(self, text: str) -> ParsedOutput:
        return parse_output(text, calls=self.calls)


FREE_TEXT = OutputPlan(grammar=None)


def _lark(tools: ToolPlan | None, schema: dict[str, Any] | None) -> str:
    lines: list[str] = []
    answer: list[str] = []
    if schema is not None:
        answer.append("answer")
        lines.append(f"answer: {lark_json(schema)}")
    elif tools is not None:
        answer.append("TEXT")
        lines.append(_TEXT_RULE)
    if tools is not None and tools.may_call:
        if tools.choice == "required":
            answer = []
        answer.append("calls")
        # A newline may close the last call: models write one after a closing tag
        # and then end their turn, instead of starting another call.
        lines.append('calls: call ("\\n" call)* "\\n"?' if tools.parallel else 'calls: call "\\n"?')
        alts = " | ".join(f"f{i}" for i in range(len(tools.functions)))
        lines.append(f"call: {_literal(CALL_OPEN)} ({alts}) {_literal(CALL_CLOSE)}")
        for i, f in enumerate(tools.functions):
            head = f'{{"name": {json.dumps(f.name)}, "arguments": '
            lines.append(f'f{i}: {_literal(head)} a{i} "}}"')
            params = f.parameters if f.parameters is not None else {"type": "object"}
            lines.append(f"a{i}: {lark_json(params)}")
    return "\n".join([f"start: {' | '.join(answer)}", *lines]) + "\n"


def output_plan(
    *,
    tools: ToolPlan | None = None,
    schema: dict[str, Any] | None = None,
    param: str = "response_format",
) -> OutputPlan:
    """The grammar for these tools and/or this JSON schema (None: free text)."""
    if tools is None and schema is None:
        return FREE_TEXT
    import llguidance

    grammar: str = llguidance.LLMatcher.grammar_from_lark(_lark(tools, schema))
    validate(grammar, "tools" if schema is None else param)
    return OutputPlan(grammar, tools)


def _mentions_json(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any("json" in json.dumps(m.get("content"), ensure_ascii=False).lower() for m in messages)


def chat_response_format(
    response_format: Mapping[str, Any] | None, messages: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The JSON schema a chat `response_format` asks for; None for text."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        if not _mentions_json(messages):
            raise InvalidRequest(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
        return JSON_OBJECT_SCHEMA
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequest(
                "'response_format.json_schema' must be an object with 'name' and 'schema'.",
                param="response_format.json_schema",
            )
        _check_name(spec.get("name"), "response_format.json_schema.name")
        schema = spec.get("schema", {"type": "object"})
        return check_schema(schema, "response_format.json_schema.schema")
    raise InvalidRequest(
        f"'response_format.type' {kind!r} is not supported; use 'text', 'json_object' or "
        "'json_schema'.",
        param="response_format.type",
    )


def responses_text_format(
    text: Mapping[str, Any] | None, messages: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The same for Responses' `text.format` (flat: name and schema beside type)."""
    fmt = (text or {}).get("format") or {"type": "text"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        if not _mentions_json(messages):
            raise InvalidRequest(
                "Response input messages must contain the word 'json' in some form to use "
                "'text.format' of type 'json_object'.",
                param="text.format",
            )
        return JSON_OBJECT_SCHEMA
    if kind == "json_schema":
        _check_name(fmt.get("name"), "text.format.name")
        return check_schema(fmt.get("schema"), "text.format.schema")
    raise InvalidRequest(
        f"text.format type {kind!r} is not supported; use 'text', 'json_object' or 'json_schema'.",
        param="text.format.type",
    )


def _check_name(name: object, param: str) -> None:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise InvalidRequest(
            f"'{param}' must be 1 to 64 letters, digits, underscores or dashes, got {name!r}.",
            param=param,
        )
