"""Every failure leaves the API as OpenAI's error body: {"error": {message, type, param, code}}.

Request-validation errors become 400 naming the offending field; anything
unexpected becomes a 500 without a traceback in the body (it is logged).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunelab.errors import InvalidRequest, Overloaded, TunelabError

log = logging.getLogger("tunelab.api")


class BodyRejected(StarletteHTTPException):
    """A body refused while it is parsed (FastAPI lets only HTTP exceptions out of
    body parsing); answered as the InvalidRequest it carries."""

    def __init__(self, error: InvalidRequest) -> None:
        super().__init__(error.status_code, error.message)
        self.error = error


def error_response(
    status: int,
    message: str,
    *,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _param_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TunelabError)
    async def _tunelab(_: Request, exc: TunelabError) -> JSONResponse:
        headers = None
        if isinstance(exc, Overloaded):
            headers = {
                "Retry-After": str(max(1, round(exc.retry_after))),
                "retry-after-ms": str(int(exc.retry_after * 1000)),
            }
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        param = _param_of(tuple(first.get("loc", ())))
        msg = first.get("msg", "Invalid request")
        if first.get("type") == "json_invalid":
            return error_response(
                400, "The request body is not valid JSON.", type_="invalid_request_error"
            )
        text = f"Invalid value for '{param}': {msg}." if param else f"Invalid request: {msg}."
        return error_response(400, text, type_="invalid_request_error", param=param)

    @app.exception_handler(BodyRejected)
    async def _body(_: Request, exc: BodyRejected) -> JSONResponse:
        return JSONResponse(exc.error.to_dict(), status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            msg = "Unknown endpoint. See the OpenAI API reference for the paths tunelab serves."
        elif exc.status_code == 405:
            msg = "This method is not allowed on this endpoint."
        else:
            msg = str(exc.detail)
        return error_response(exc.status_code, msg, type_="invalid_request_error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500,
            f"The server had an error while processing your request ({type(exc).__name__}).",
            type_="server_error",
        )
