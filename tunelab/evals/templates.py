"""`{{ item.field }}` templates: parsing, checking against the item schema, rendering.

Two namespaces exist (contract-2 §15.4): `item`, the data row, and `sample`, the
evaluated model's output (`output_text`, `output_json`, `output_tools`, `choices`).
Paths use dots and `[i]`: `{{item.answer}}`, `{{sample.output_json.score}}`,
`{{sample.output_tools[0].function.name}}`. Spacing inside the braces is normalised
(`{{ item.x }}` is echoed as `{{item.x}}`).

A reference to an item field that the eval's `item_schema` does not declare is a
400 when the eval or run is created, naming the template's field, so a typo never
turns into a run of empty prompts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tunelab.errors import InvalidRequest

NAMESPACES = ("item", "sample")
SAMPLE_KEYS = ("output_text", "output_json", "output_tools", "choices", "output_audio")

_TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_SEGMENT = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")

Segment = str | int


@dataclass(frozen=True)
class Reference:
    namespace: str
    path: tuple[Segment, ...]

    def __str__(self) -> str:
        out = self.namespace
        for seg in self.path:
            out += f"[{seg}]" if isinstance(seg, int) else f".{seg}"
        return out


def parse_reference(text: str, param: str) -> Reference:
    namespace = re.split(r"[.\[]", text, maxsplit=1)[0]
    rest = text[len(namespace) :]
    path: list[Segment] = []
    pos = 0
    while pos < len(rest):
        m = _SEGMENT.match(rest, pos)
        if m is None:
            raise InvalidRequest(
                f"{param} has a template '{{{{{text}}}}}' that is not a valid reference; write "
                "'{{item.field}}' or '{{sample.output_text}}' (dots and [index] for nested "
                "values).",
                param=param,
                code="invalid_template",
            )
        path.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if namespace not in NAMESPACES:
        raise InvalidRequest(
            f"{param} refers to '{{{{{text}}}}}', but templates can only use the namespaces "
            "'item' (the data row) and 'sample' (the model's output).",
            param=param,
            code="invalid_template",
        )
    if namespace == "sample" and (not path or path[0] not in SAMPLE_KEYS):
        raise InvalidRequest(
            f"{param} refers to '{{{{{text}}}}}'; the sample namespace has "
            f"{', '.join(SAMPLE_KEYS)}.",
            param=param,
            code="invalid_template",
        )
    return Reference(namespace, tuple(path))


def references(template: str, param: str) -> Iterator[Reference]:
    for m in _TAG.finditer(template):
        yield parse_reference(m.group(1), param)


def normalise(template: str, param: str) -> str:
    """The template with canonical spacing; raises on a malformed reference."""
    return _TAG.sub(lambda m: "{{" + str(parse_reference(m.group(1), param)) + "}}", template)


def check_against_schema(template: str, param: str, item_schema: Mapping[str, Any]) -> None:
    """400 naming `param` when the template uses an item field the schema lacks."""
    for ref in references(template, param):
        if ref.namespace == "item":
            missing = missing_field(item_schema, ref.path)
            if missing is not None:
                raise InvalidRequest(
                    f"{param} uses '{{{{{ref}}}}}', but the eval's item_schema has no field "
                    f"'{missing}'. Fix the template or add the field to "
                    "data_source_config.item_schema.",
                    param=param,
                    code="invalid_template",
                )


def missing_field(schema: Mapping[str, Any], path: tuple[Segment, ...]) -> str | None:
    """The first path prefix the schema does not declare, or None if all of it is there.

    A schema part without `properties` (or `items`) declares nothing about its
    contents, so anything below it is accepted.
    """
    node: Mapping[str, Any] = schema
    walked = "item"
    for seg in path:
        walked += f"[{seg}]" if isinstance(seg, int) else f".{seg}"
        if isinstance(seg, int):
            items = node.get("items")
            if not isinstance(items, Mapping):
                return None
            node = items
            continue
        props = node.get("properties")
        if not isinstance(props, Mapping):
            return None
        child = props.get(seg)
        if not isinstance(child, Mapping):
            return walked
        node = child
    return None


def lookup(value: Any, path: tuple[Segment, ...]) -> Any:
    """The value at `path`, or None when any step is missing."""
    for seg in path:
        if isinstance(seg, int):
            if not isinstance(value, list) or seg >= len(value):
                return None
            value = value[seg]
        else:
            if not isinstance(value, Mapping) or seg not in value:
                return None
            value = value[seg]
    return value


def as_text(value: Any) -> str:
    """How a value appears inside a rendered template: strings as they are, numbers
    and structures as JSON, a missing value as an empty string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def resolve(ref: Reference, item: Mapping[str, Any], sample: Mapping[str, Any] | None) -> Any:
    root = item if ref.namespace == "item" else (sample or {})
    return lookup(root, ref.path)


def render(template: str, item: Mapping[str, Any], sample: Mapping[str, Any] | None) -> str:
    """The template with every reference replaced by its value for this row."""
    return _TAG.sub(
        lambda m: as_text(resolve(parse_reference(m.group(1), "template"), item, sample)),
        template,
    )


def uses_sample(template: str) -> bool:
    return any(r.namespace == "sample" for r in references(template, "template"))
