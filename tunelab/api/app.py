"""create_app(settings): the FastAPI app serving OpenAI's API under /v1.

Services are built here (never at import time); each route module in
ROUTE_MODULES contributes a router and may start background work in `setup`.
Every response carries an `x-request-id`, as OpenAI's do.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

import tunelab
from tunelab.api.errors import install_error_handlers
from tunelab.api.routes import ROUTE_MODULES
from tunelab.ids import random_token
from tunelab.services import Services, build_services
from tunelab.settings import Settings

log = logging.getLogger("tunelab")


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()
    services = services or build_services(settings)
    modules = [importlib.import_module(name) for name in ROUTE_MODULES]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            for module in modules:
                setup = getattr(module, "setup", None)
                ctx = setup(app, services) if setup else None
                if ctx is not None:
                    stack.enter_context(ctx)
            yield
        services.close()

    app = FastAPI(title="tunelab", version=tunelab.__version__, lifespan=lifespan)
    app.state.services = services
    install_error_handlers(app)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["x-request-id"] = "req_" + random_token(24)
        return response

    for module in modules:
        prefix = "" if module.__name__.endswith(".health") else "/v1"
        app.include_router(module.router, prefix=prefix)
    return app
