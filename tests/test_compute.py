"""The process's one compute thread (tunelab.compute) and the engines that use it.

What serving relies on: on a CPU every caller's work runs on the one thread named
"compute", one piece at a time, and each caller gets its own result or exception;
work the compute thread asks for runs in place (no deadlock); a GPU's work runs on
the caller's thread; and both engines put their model work there: generation steps
(with their first-use checks) and embedding loads and passes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.tiny_models import TINY_CHAT
from tunelab import compute
from tunelab.inference.handle import Finished, Generation, SamplingParams


def here() -> str:
    return threading.current_thread().name


@pytest.mark.unit
def test_cpu_work_runs_on_the_compute_thread_one_piece_at_a_time() -> None:
    running, overlaps = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> tuple[int, str]:
        with lock:
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        return i * i, here()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: compute.run(work, i), range(40)))
    assert [r for r, _ in results] == [i * i for i in range(40)]
    assert {name for _, name in results} == {"compute"}
    assert overlaps[0] == 1


@pytest.mark.unit
def test_exceptions_reach_their_caller_and_the_thread_carries_on() -> None:
    def fail() -> None:
        raise ValueError("bad shape")

    with pytest.raises(ValueError, match="bad shape"):
        compute.run(fail)
    assert compute.run(here) == "compute"


@pytest.mark.unit
def test_work_asked_for_by_the_compute_thread_runs_in_place() -> None:
    assert compute.run(lambda: compute.run(here)) == "compute"


@pytest.mark.unit
def test_gpu_work_runs_on_the_callers_thread() -> None:
    assert compute.run(here, device="cuda:0") == here()


@pytest.mark.unit
def test_generation_steps_run_on_the_compute_thread(tiny_chat_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.inference.forward import TorchForward
    from tunelab.inference.worker import GenerationWorker

    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_chat_dir))
    threads: set[str] = set()
    forward: Any = model.forward

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.add(here())
        return forward(*args, **kwargs)

    model.forward = recording
    worker = GenerationWorker(
        TorchForward(model, 1), tok, name=TINY_CHAT, max_batch=4, max_queued=4
    )
    try:
        params = SamplingParams(max_tokens=5, temperature=0)
        gen = Generation([1, 2, 3], params, stop_token_ids=frozenset())
        worker.submit(gen)
        events = list(gen.events())
        assert isinstance(events[-1], Finished)
        assert threads == {"compute"}  # transformers' forward: the first-use checks
    finally:
        worker.close()


@pytest.mark.realmodel
def test_embedding_loads_and_passes_run_on_the_compute_thread(
    model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.embeddings.service import _ModelWorker
    from tunelab.models import loading
    from tunelab.models.registry import MINILM, Registry

    threads: list[str] = []
    real_load = loading.load_sentence_transformer

    def load(*args: Any, **kwargs: Any) -> Any:
        threads.append(here())
        return real_load(*args, **kwargs)

    monkeypatch.setattr(loading, "load_sentence_transformer", load)
    worker = _ModelWorker(Registry.load().get(MINILM), model_cache, "cpu", 0.005, 256, bf16=False)
    try:
        assert worker.lean is not None
        lean = worker.lean
        real_call = type(lean).__call__

        def call(ids: list[list[int]]) -> torch.Tensor:
            threads.append(here())
            return real_call(lean, ids)

        worker.lean = call  # type: ignore[assignment]
        worker.submit(["a text long enough to count. " * 30] * 12, "passage", None).result(30)
        assert len(threads) > 2  # the load, then several passes of FORWARD_TOKENS
        assert set(threads) == {"compute"}
    finally:
        worker.stop()
