"""The process's one thread for model computation on a CPU.

PyTorch's CPU build runs parallel work on libgomp, which gives every thread that
starts parallel work a team of its own. Once a process has more team threads than
cores, libgomp stops spin-waiting between parallel regions, and each of the many
small operations of a forward pass waits for its team to wake. A server whose
generation worker and embedding worker each ran their models was in that state from
its first request of each kind on: on the 2-core AVX512-BF16 machine, SmolLM2 went
from 64 to 42 tokens/s after one embedding request, and a one-text embedding took
5.7 ms instead of 1.4.

So on a CPU every engine runs its model work through `run`, on one thread, one piece
at a time, in the order asked: a generation step, an embedding pass (at most
`FORWARD_TOKENS` tokens, so a decode step waits for at most one), a model load. The
engines would share the same cores anyway. Measured with chat streaming while a store
indexed 60 man pages (MiniLM, 901 chunks): before, chat 40 tokens/s alone (an
embedding had run) and 34 during indexing, which took 21.6 s; now 68 alone and 22
during indexing, which took 20.9 s (with 2048-token passes: 10 tokens/s, 14.6 s).
On a GPU the work is kernel launches, and `run` calls the function in place, on the
caller's thread.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_start = threading.Lock()


def run(fn: Callable[..., T], *args: Any, device: str = "cpu") -> T:
    """fn(*args), on the compute thread when `device` is the CPU; raises what fn raised."""
    if not device.startswith("cpu") or threading.current_thread() is _thread:
        return fn(*args)  # a GPU's work, or work the compute thread itself asks for
    _started()
    future: Future[T] = Future()
    _queue.put((functools.partial(fn, *args), future))
    return future.result()


def _started() -> None:
    global _thread
    if _thread is None:
        with _start:
            if _thread is None:
                _thread = threading.Thread(target=_loop, name="compute", daemon=True)
                _thread.start()


def _loop() -> None:
    while True:
        fn, future = _queue.get()
        try:
            future.set_result(fn())
        except BaseException as e:  # the caller re-raises it
            future.set_exception(e)
