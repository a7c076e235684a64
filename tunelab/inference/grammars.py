"""Grammars for constrained decoding, as llguidance grammar text (plain data).

A grammar crosses the chat-engine seam inside `SamplingParams.grammar`, so any
engine that speaks llguidance (ours, llama.cpp built with it) enforces the same
thing. This module builds them and checks them before anything is queued: a
schema llguidance cannot enforce is a 400 that names the unsupported part, not a
failed generation.

The public calls other features use (Evals' label and score graders, for one):

    json_schema_grammar(schema)        any JSON value matching a JSON schema
    choices_grammar(["yes", "no"])     exactly one of these strings
    JSON_OBJECT                        any JSON object (response_format json_object)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tunelab.errors import InvalidRequest

# JSON exactly as Python's json.dumps writes it (", " and ": ", no other
# whitespace): the form training renders tool arguments in, and one that cannot
# drift into endless newlines.
JSON_STYLE = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


def _llg() -> Any:
    import llguidance

    return llguidance


def check_schema(schema: object, param: str) -> dict[str, Any]:
    """A JSON schema constrained decoding can enforce, or a 400 naming `param` and
    what it cannot (e.g. `Unimplemented keys: ["if"]`)."""
    _compiled(schema, param)
    assert isinstance(schema, dict)  # _compiled refuses anything else
    return schema


def _compiled(schema: object, param: str) -> str:
    """The llguidance grammar of a JSON schema, checked (see check_schema)."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"'{param}' must be a JSON schema object.", param=param)
    grammar: str = _llg().LLMatcher.grammar_from_json_schema(_styled(schema))
    validate(grammar, param)
    return grammar


def _styled(schema: dict[str, Any]) -> dict[str, Any]:
    closed = _declared_only(schema)
    return {**closed, "x-guidance": {**JSON_STYLE, **schema.get("x-guidance", {})}}


# Keywords whose value is a schema, a list of schemas, or a name -> schema mapping.
_SUBSCHEMA = ("items", "additionalItems", "not", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")


def _declared_only(schema: Any) -> Any:
    """The schema with every object that lists `properties` (and says nothing about
    `additionalProperties` or `patternProperties`) closed to those properties.

    JSON Schema allows undeclared properties by default, and a small model given that
    freedom in a tool call's arguments goes on inventing keys until max_tokens cuts it
    (LangChain's tool schemas, SmolLM2 in bf16), so the call is not valid JSON. As
    llama.cpp's grammar converter does, a declared property list is taken as the whole
    list; `"additionalProperties": true` (or a schema) still allows others."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMA:
        if key in out:
            out[key] = _declared_only(out[key])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_declared_only(x) for x in out[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _declared_only(x) for name, x in out[key].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _declared_only(out["additionalProperties"])
    elif (
        isinstance(out.get("properties"), dict)
        and "additionalProperties" not in out
        and "patternProperties" not in out
    ):
        out["additionalProperties"] = False
    return out


def json_schema_grammar(schema: dict[str, Any], *, param: str = "schema") -> str:
    """Any JSON value that validates against `schema` (compiled once, checked)."""
    return _compiled(schema, param)


JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


def json_object_grammar() -> str:
    return json_schema_grammar(JSON_OBJECT_SCHEMA)


def choices_grammar(choices: Sequence[str], *, param: str = "choices") -> str:
    """Exactly one of `choices`, verbatim."""
    if not choices or not all(isinstance(c, str) and c for c in choices):
        raise InvalidRequest(
            f"'{param}' must be a non-empty list of non-empty strings.", param=param
        )
    body = " | ".join(json.dumps(c, ensure_ascii=False) for c in choices)
    return lark_grammar(f"start: {body}\n", param=param)


def lark_grammar(text: str, *, param: str = "grammar") -> str:
    grammar: str = _llg().LLMatcher.grammar_from_lark(text)
    validate(grammar, param)
    return grammar


def lark_json(schema: dict[str, Any]) -> str:
    """A `%json {...}` item for a lark rule, in the same JSON style."""
    return "%json " + json.dumps(_styled(schema), ensure_ascii=False)


def validate(grammar: str, param: str) -> None:
    """A 400 naming what llguidance cannot enforce (e.g. `Unimplemented keys: ["if"]`,
    look-around in a `pattern`, an unknown `format`)."""
    error = _llg().LLMatcher.validate_grammar(grammar, None)
    if error:
        raise InvalidRequest(
            f"'{param}' uses JSON schema features that constrained decoding does not "
            f"support: {error}. Remove them or express them differently.",
            param=param,
        )
