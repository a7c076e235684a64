"""create_app(runtime): the FastAPI app serving OpenAI's API under /v1.

The app serves one `Runtime` (built from Settings if given those): its lifespan
starts the runtime's background work and closes it at shutdown. Routes are thin:
each handler parses, calls one service from `api.deps`, and returns a protocol
model. The web dashboard is served at /dashboard/ (tunelab.api.dashboard).
Every response carries an `x-request-id`, as OpenAI's do. Keys and body sizes
are checked before any route reads a body (tunelab.api.guard).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import tunelab
from tunelab.api import dashboard, metrics
from tunelab.api.deps import TunelabApp
from tunelab.api.errors import install_error_handlers
from tunelab.api.guard import RequestGuard
from tunelab.api.routes import V1_ROUTERS, health
from tunelab.ids import random_token
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

log = logging.getLogger("tunelab")


def create_app(runtime: Runtime | Settings | None = None) -> TunelabApp:
    """The app for `runtime` (or for a runtime built from these settings, or from
    the environment's)."""
    if not isinstance(runtime, Runtime):
        runtime = build_runtime(runtime or Settings())
    rt = runtime

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        rt.start()
        try:
            yield
        finally:
            rt.close()

    app = TunelabApp(rt, title="tunelab", version=tunelab.__version__, lifespan=lifespan)
    install_error_handlers(app)

    app.add_middleware(RequestId)
    metrics.install(app, rt)
    # Outermost of the app's own middleware: nothing below it has read the body yet.
    app.add_middleware(RequestGuard, settings=rt.settings, keys=rt.keys)
    app.include_router(health.router)
    for router in V1_ROUTERS:
        app.include_router(router, prefix="/v1")
    app.include_router(dashboard.api_router, prefix="/v1")
    dashboard.install(app)
    return app


class RequestId:
    """Puts an `x-request-id` on every response, as OpenAI does (clients log it).

    A plain ASGI middleware (see metrics.HttpTraffic for why)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = "req_" + random_token(24)
            await send(message)

        await self.app(scope, receive, with_id)
