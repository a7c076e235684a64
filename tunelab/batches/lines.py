"""Reading a batch input file: one request per line, each checked on its own.

Errors carry the 1-based line number and OpenAI's codes (`invalid_json_line`,
`duplicate_custom_id`, `url_mismatch`, `model_mismatch`, `empty_file`,
`too_many_tasks`), so a user fixes every bad line in one go.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_REQUESTS = 50_000
MAX_EMBEDDING_INPUTS = 50_000
MAX_ERRORS = 100  # the rest are counted, not listed


@dataclass(frozen=True)
class Request:
    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass
class LineError:
    code: str
    message: str
    line: int | None
    param: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass
class Parsed:
    requests: list[Request] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0
    model: str | None = None

    def fail(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(LineError(code, message, line, param))


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                yield number, raw


def _check(obj: Any, number: int, endpoint: str, out: Parsed) -> Request | None:
    if not isinstance(obj, dict):
        out.fail("invalid_json_line", "This line is not a JSON object.", number)
        return None
    for key in ("custom_id", "method", "url", "body"):
        if key not in obj:
            out.fail(
                "missing_required_parameter", f"Missing required parameter: '{key}'.", number, key
            )
            return None
    custom_id, method, url, body = obj["custom_id"], obj["method"], obj["url"], obj["body"]
    if not isinstance(custom_id, str) or not custom_id:
        out.fail(
            "invalid_custom_id", "'custom_id' must be a non-empty string.", number, "custom_id"
        )
        return None
    if method != "POST":
        out.fail("invalid_method", f"'method' must be 'POST', not {method!r}.", number, "method")
        return None
    if url != endpoint:
        out.fail(
            "url_mismatch",
            f"The url {url!r} does not match the batch endpoint "
            f"{endpoint!r}; every line must use the batch's endpoint.",
            number,
            "url",
        )
        return None
    if not isinstance(body, dict):
        out.fail(
            "invalid_body",
            "'body' must be a JSON object with the endpoint's parameters.",
            number,
            "body",
        )
        return None
    model = body.get("model")
    if not isinstance(model, str) or not model:
        out.fail(
            "missing_required_parameter",
            "Missing required parameter: 'body.model'.",
            number,
            "body.model",
        )
        return None
    if body.get("stream"):
        out.fail(
            "invalid_body",
            "'body.stream' is not supported in a batch; results go to the output file.",
            number,
            "body.stream",
        )
        return None
    if out.model is None:
        out.model = model
    elif model != out.model:
        out.fail(
            "model_mismatch",
            f"Line uses model {model!r} but the batch uses {out.model!r}; a batch runs one model.",
            number,
            "body.model",
        )
        return None
    return Request(number, custom_id, body)


def parse_input(path: Path, endpoint: str) -> Parsed:
    """Every line's request, or the problems that make the file unusable."""
    out = Parsed()
    seen: set[str] = set()
    inputs = 0
    for number, raw in _lines(path):
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            out.fail("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        req = _check(obj, number, endpoint, out)
        if req is None:
            continue
        if req.custom_id in seen:
            out.fail(
                "duplicate_custom_id",
                f"The custom_id {req.custom_id!r} is used more than "
                "once; custom_id must be unique for each request in a batch.",
                number,
                "custom_id",
            )
            continue
        seen.add(req.custom_id)
        if endpoint == "/v1/embeddings":
            value = req.body.get("input")
            many = isinstance(value, list) and value and not isinstance(value[0], int)
            inputs += len(value) if many else 1  # type: ignore[arg-type]
        out.requests.append(req)
    if not out.requests and not out.error_count:
        out.fail("empty_file", "The input file has no requests.", None)
    if len(out.requests) > MAX_REQUESTS:
        out.fail(
            "too_many_tasks",
            f"The file has {len(out.requests)} requests; a batch takes at "
            f"most {MAX_REQUESTS}. Split it into several batches.",
            None,
        )
    if inputs > MAX_EMBEDDING_INPUTS:
        out.fail(
            "too_many_tasks",
            f"The file has {inputs} embedding inputs; a batch takes at "
            f"most {MAX_EMBEDDING_INPUTS}. Split it into several batches.",
            None,
        )
    return out
