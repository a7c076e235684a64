"""What every request meets before the app reads a byte of its body.

An ASGI middleware, outside the routes, because a route sees a request only after
FastAPI has read (and parsed, or spooled to disk) its whole body:

1. the key: a /v1 request without a valid key is answered 401 at once, and its body
   is never read, however large;
2. the size: a body longer than the limit of its route (TUNELAB_MAX_UPLOAD_BYTES
   for a file upload, TUNELAB_MAX_REQUEST_BYTES for anything else) is answered 413,
   from its Content-Length when it has one, else as soon as the bytes that stream in
   pass the limit;
3. the API description (/docs, /redoc, /openapi.json) is served only as the
   `api_docs` setting says.

The project the key belongs to is left in the request's scope for `current_project`.
"""

from __future__ import annotations

import json
import re

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunelab.api.deps import PROJECT_SCOPE_KEY, authenticate
from tunelab.errors import NotFound, PayloadTooLarge, TunelabError, Unauthorized
from tunelab.keys import KeyStore
from tunelab.limits import MULTIPART_OVERHEAD_BYTES
from tunelab.settings import Settings

DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_UPLOAD = re.compile(r"/v1/(files|uploads/[^/]+/parts)/?")


class _TooLarge(Exception):
    """Raised into the app's body reading once the body passes its limit."""


async def _send_error(send: Send, error: TunelabError) -> None:
    body = json.dumps(error.to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(error, PayloadTooLarge | Unauthorized):
        # The client may still be sending a body we will not read.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def body_limit(settings: Settings, method: str, path: str) -> tuple[int, str]:
    """The most bytes a body may have on this route, and what to tell the client."""
    if method == "POST" and _UPLOAD.fullmatch(path):
        return (
            settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
            f"A file (or upload part) may have at most {settings.max_upload_bytes} bytes "
            "(TUNELAB_MAX_UPLOAD_BYTES); split it with the Uploads API.",
        )
    return (
        settings.max_request_bytes,
        f"The request body may have at most {settings.max_request_bytes} bytes "
        "(TUNELAB_MAX_REQUEST_BYTES); send less per request, or upload files with /v1/files.",
    )


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings, keys: KeyStore) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in DOC_PATHS:
            if not await self._docs_served():
                await _send_error(send, NotFound("Not found."))
                return
        elif path.startswith("/v1/"):
            header = ""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    header = value.decode("latin-1")
            try:
                project = await anyio.to_thread.run_sync(authenticate, self.keys, header)
            except Unauthorized as e:
                await _send_error(send, e)
                return
            scope.setdefault("state", {})[PROJECT_SCOPE_KEY] = project
        await self._limited(scope, receive, send)

    async def _docs_served(self) -> bool:
        mode = self.settings.api_docs
        if mode != "auto":
            return mode == "on"
        return not await anyio.to_thread.run_sync(self.keys.any_configured)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit, why = body_limit(self.settings, scope["method"], scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_error(send, PayloadTooLarge(why, code="request_too_large"))
                return
        seen = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # whatever the app answers to a body cut short, the answer is 413
                if not started:
                    started = True
                    await _send_error(send, PayloadTooLarge(why, code="request_too_large"))
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            # _TooLarge itself, or whatever the body's reader made of it
            if not over:
                raise
            if not started:
                await _send_error(send, PayloadTooLarge(why, code="request_too_large"))
