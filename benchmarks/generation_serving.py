"""tunelab serving a base model and a LoRA fine-tune of it, and greedy streams through
the SDK in a process of its own: the "tunelab" side of benchmarks/generation.py, for
both chat engines."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import run_server, sdk
from tunelab.api.app import create_app
from tunelab.models.registry import SMOLLM2
from tunelab.settings import Settings

FT = "ft:smollm2-135m-instruct:default:bench:rand01"


@dataclass(frozen=True)
class Client:
    """Where the SDK runs: a process of its own, like a user's program, so the server's
    process runs only what tunelab runs (an SDK parsing chunks in the server's process
    would take the GIL from its worker thread on every token)."""

    url: str
    pool: ProcessPoolExecutor


@contextmanager
def serving(settings: Settings, adapter: Path) -> Iterator[Client]:
    """A client of a real server with SmolLM2 and `adapter` registered as FT, both
    loaded and warmed up."""
    app = create_app(settings)
    app.runtime.catalog.register_fine_tuned(
        project="default", model_id=FT, base_model=SMOLLM2, path=adapter, kind="lora"
    )
    with (
        run_server(app) as url,
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        client = Client(url, pool)
        tunelab_run(client, SMOLLM2, ["Hi"], 4, False)  # load + warm up
        tunelab_run(client, FT, ["Hi"], 4, False)  # attach (or convert) the adapter
        yield client


def tunelab_run(
    client: Client, model: str | list[str], prompts: list[str], tokens: int, concurrent: bool
) -> tuple[float, float, float]:
    """(tokens/s, tokens per CPU-second, mean TTFT) of greedy streams through the SDK
    (`model` for every prompt, or a list: each prompt's own).
    The end-of-turn token is banned (logit_bias), so every stream runs `tokens` long,
    like the plain baseline. CPU time: the server's process and the client's, all of
    tunelab's cost (the client's is small)."""
    cpu = time.process_time()
    models = model if isinstance(model, list) else [model] * len(prompts)
    n, wall, client_cpu, ttft = client.pool.submit(
        _streams, client.url, list(zip(models, prompts, strict=True)), tokens, concurrent
    ).result()
    cpu = time.process_time() - cpu + client_cpu
    return n / wall, n / cpu, ttft


def _streams(
    url: str, runs: list[tuple[str, str]], tokens: int, concurrent: bool
) -> tuple[int, float, float, float]:
    """In the client's process: tokens, wall seconds, CPU seconds, mean TTFT."""
    client = sdk(url)

    def one(run: tuple[str, str]) -> tuple[int, float]:
        model, prompt = run
        t, first, n, reason = time.perf_counter(), None, 0, None
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            logit_bias={"2": -100},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - t
            if chunk.choices and chunk.choices[0].finish_reason:
                reason = chunk.choices[0].finish_reason
            if chunk.usage:
                n = chunk.usage.completion_tokens - (reason == "stop")
        assert n == tokens, n
        return n, first or 0.0

    t, cpu = time.perf_counter(), time.process_time()
    if concurrent:
        with ThreadPoolExecutor(len(runs)) as pool:
            done = list(pool.map(one, runs))
    else:
        done = [one(r) for r in runs]
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    return sum(count for count, _ in done), wall, cpu, statistics.mean(f for _, f in done)
