"""Waiting for a non-streaming answer while watching for the client to leave.

Every generating endpoint answers through this (or streams, whose end cancels
too), so a client that hangs up never leaves a model generating for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Protocol, TypeVar

from fastapi import Request

T = TypeVar("T")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class ClientGone(Exception):
    """The client disconnected before its (non-streaming) answer was ready."""


async def unless_disconnected(
    request: Request, work: Awaitable[T], cancel: Sequence[Cancellable]
) -> T:
    """Await `work`, cancelling `cancel` (the generations) if the client hangs up first.

    Waits on the ASGI receive channel for `http.disconnect` (polling
    `request.is_disconnected()` sees nothing behind an http middleware)."""

    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            await asyncio.sleep(0.1)

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    for c in cancel:
        c.cancel()
    task.cancel()
    raise ClientGone
