"""Recording what each call of a client flow did (stdlib only: runs in every client's venv).

A flow is a sequence of `step`s. Each step names the capability it exercises
(the README compatibility table's columns) and the call, and either passes or
fails with the reason. A step that needs the result of a failed one fails with
"needs ...", so one broken call does not hide behind a cascade of tracebacks.

Results are appended as JSON lines to the file named by argv[1]; the runner
(compat/run.py) reads them and prints the matrix.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

BASE_URL = os.environ["COMPAT_BASE_URL"]  # http://127.0.0.1:PORT/v1
API_KEY = os.environ.get("COMPAT_API_KEY", "sk-compat")
WORK_DIR = os.environ.get("COMPAT_WORK_DIR", os.getcwd())


class Needed(Exception):
    """A step could not run because an earlier one it depends on failed."""


class Flow:
    def __init__(self, client: str) -> None:
        self.client = client
        self.values: dict[str, Any] = {}
        self._out = open(sys.argv[1], "a", encoding="utf-8")  # noqa: SIM115

    def need(self, *names: str) -> list[Any]:
        missing = [n for n in names if n not in self.values]
        if missing:
            raise Needed("needs " + ", ".join(missing))
        return [self.values[n] for n in names]

    def step(self, capability: str, call: str) -> Callable[[Callable[[], Any]], Any]:
        """Decorator: run the function now and record the outcome."""

        def run(fn: Callable[[], Any]) -> Any:
            start = time.monotonic()
            detail = ""
            try:
                result = fn()
                ok = True
                if result is not None:
                    detail = str(result)[:200]
            except Needed as e:
                ok, detail = False, str(e)
            except BaseException as e:  # record it and go on with the next call
                ok = False
                detail = f"{type(e).__name__}: {e}"[:600]
                traceback.print_exc()
            record = {
                "client": self.client,
                "capability": capability,
                "call": call,
                "ok": ok,
                "detail": detail,
                "seconds": round(time.monotonic() - start, 2),
            }
            self._out.write(json.dumps(record) + "\n")
            self._out.flush()
            print(("PASS " if ok else "FAIL ") + f"{capability}: {call} {detail}", flush=True)
            return fn

        return run


def expect(condition: bool, message: str) -> None:
    """assert that survives python -O and reads as a check, not a debug aid."""
    if not condition:
        raise AssertionError(message)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float, every: float = 1.0) -> Any:
    """Poll until predicate() is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        time.sleep(every)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb)
