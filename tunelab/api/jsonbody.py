"""Request bodies parsed as strict JSON: every route of the API uses `ApiRoute`.

Python's json module accepts what JSON does not: `NaN`, `Infinity`, `-Infinity`,
numbers too large for a float (1e400 becomes inf), and `\\ud800` escapes that
decode to lone surrogates. None of these can be stored, tokenised or written back
out as JSON, so they are refused here with a 400 naming the field that holds them,
before any handler or service sees them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from tunelab.api.errors import BodyRejected
from tunelab.errors import InvalidRequest
from tunelab.limits import unicode_error

# Only a body with one of these can hold a value refused here: most bodies skip the walk.
_SUSPECT = re.compile(rb"NaN|Infinity|\d[eE]\+?\d{3}|\\u[dD][89abcdefABCDEF]")


def _path(parts: list[str | int]) -> str | None:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or None


def _first_bad(value: Any, parts: list[str | int]) -> tuple[list[str | int], str] | None:
    """The path to the first value JSON cannot carry, and what is wrong with it."""
    if isinstance(value, float) and not math.isfinite(value):
        return parts, f"{value!r} is not a JSON number; send a finite number"
    if isinstance(value, str):
        why = unicode_error(value)
        return (parts, f"the string is not valid Unicode: {why}") if why else None
    if isinstance(value, dict):
        for k, v in value.items():
            why = unicode_error(k)
            if why:
                key = k.encode("utf-8", "replace").decode()
                return [*parts, key], f"a key is not valid Unicode: {why}"
            found = _first_bad(v, [*parts, k])
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _first_bad(v, [*parts, i])
            if found:
                return found
    return None


def strict_loads(body: bytes) -> Any:
    """The parsed body; BodyRejected (a 400 naming the field) for what JSON cannot carry."""
    value = json.loads(body)
    if _SUSPECT.search(body):
        found = _first_bad(value, [])
        if found is not None:
            parts, why = found
            param = _path(parts)
            where = f"'{param}'" if param else "The request body"
            raise BodyRejected(InvalidRequest(f"Invalid value for {where}: {why}.", param=param))
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class ApiRoute(APIRoute):
    """A route whose JSON body is parsed by `strict_loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
