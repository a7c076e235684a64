"""Attribute filters over vector-store-file `attributes` (OpenAI's filter shapes).

    comparison: {"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key": str, "value": ...}
    compound:   {"type": "and"|"or", "filters": [comparison | compound, ...]}

`validate_filter` checks a filter once (naming the bad part) and `matches` evaluates
it against one file's attributes. A comparison on a missing key is false, except `ne`
and `nin`, which are true (the file does not have that value). Ordering comparisons
between a number and a string are false rather than an error.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from tunelab.errors import InvalidRequest

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
COMPARISONS = ("eq", "ne", "in", "nin", *_ORDER)
COMPOUNDS = ("and", "or")
MAX_DEPTH = 8


def validate_filter(f: Any, param: str = "filters", depth: int = 0) -> None:
    if not isinstance(f, dict):
        raise InvalidRequest(f"'{param}' must be an object with a 'type'.", param=param)
    kind = f.get("type")
    if kind in COMPOUNDS:
        subs = f.get("filters")
        if not isinstance(subs, list) or not subs:
            raise InvalidRequest(
                f"'{param}.filters' must be a non-empty list for a '{kind}' filter.",
                param=f"{param}.filters",
            )
        if depth >= MAX_DEPTH:
            raise InvalidRequest(f"Filters nest at most {MAX_DEPTH} levels deep.", param=param)
        for n, sub in enumerate(subs):
            validate_filter(sub, f"{param}.filters[{n}]", depth + 1)
        return
    if kind not in COMPARISONS:
        raise InvalidRequest(
            f"'{param}.type' must be one of {', '.join(COMPARISONS + COMPOUNDS)}, not {kind!r}.",
            param=f"{param}.type",
        )
    if not isinstance(f.get("key"), str) or not f["key"]:
        raise InvalidRequest(f"'{param}.key' must be a non-empty string.", param=f"{param}.key")
    if "value" not in f:
        raise InvalidRequest(f"'{param}.value' is required.", param=f"{param}.value")
    value = f["value"]
    if kind in ("in", "nin"):
        if not isinstance(value, list):
            raise InvalidRequest(
                f"'{param}.value' must be a list for '{kind}'.", param=f"{param}.value"
            )
    elif not isinstance(value, (str, int, float, bool)):
        raise InvalidRequest(
            f"'{param}.value' must be a string, number or boolean for '{kind}'.",
            param=f"{param}.value",
        )


def _same_kind(a: Any, b: Any) -> bool:
    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        return "num" if isinstance(v, (int, float)) else type(v).__name__

    return kind(a) == kind(b)


def matches(f: dict[str, Any], attributes: dict[str, Any] | None) -> bool:
    """Whether a file with these attributes passes the (validated) filter."""
    kind = f["type"]
    if kind == "and":
        return all(matches(sub, attributes) for sub in f["filters"])
    if kind == "or":
        return any(matches(sub, attributes) for sub in f["filters"])
    attrs = attributes or {}
    present = f["key"] in attrs
    have, want = attrs.get(f["key"]), f["value"]
    if kind == "eq":
        return present and _same_kind(have, want) and have == want
    if kind == "ne":
        return not (present and _same_kind(have, want) and have == want)
    if kind == "in":
        return present and any(_same_kind(have, w) and have == w for w in want)
    if kind == "nin":
        return not (present and any(_same_kind(have, w) and have == w for w in want))
    if not present or not _same_kind(have, want) or isinstance(want, bool):
        return False
    return _ORDER[kind](have, want)
