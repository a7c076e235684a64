"""tunelab serving a base model and a LoRA fine-tune of it, and greedy streams through
the SDK: the "tunelab" side of benchmarks/generation.py, for both chat engines."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import run_server, sdk
from tunelab.api.app import create_app
from tunelab.models.registry import SMOLLM2
from tunelab.settings import Settings

FT = "ft:smollm2-135m-instruct:default:bench:rand01"


@contextmanager
def serving(settings: Settings, adapter: Path) -> Iterator[Any]:
    """An SDK client of a real server with SmolLM2 and `adapter` registered as FT, both
    loaded and warmed up."""
    app = create_app(settings)
    app.runtime.catalog.register_fine_tuned(
        project="default", model_id=FT, base_model=SMOLLM2, path=adapter, kind="lora"
    )
    with run_server(app) as url:
        client = sdk(url)
        tunelab_run(client, SMOLLM2, ["Hi"], 4, False)  # load + warm up
        tunelab_run(client, FT, ["Hi"], 4, False)  # attach (or convert) the adapter
        yield client


def tunelab_run(
    client: Any, model: str, prompts: list[str], tokens: int, concurrent: bool
) -> tuple[float, float, float]:
    """(tokens/s, tokens per CPU-second, mean TTFT) of greedy streams through the SDK.
    The end-of-turn token is banned (logit_bias), so every stream runs `tokens` long,
    like the plain baseline."""

    def one(prompt: str) -> tuple[int, float]:
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
        with ThreadPoolExecutor(len(prompts)) as pool:
            runs = list(pool.map(one, prompts))
    else:
        runs = [one(p) for p in prompts]
    # process CPU time includes the server, HTTP and the SDK client: all of tunelab's cost
    n = sum(count for count, _ in runs)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    return n / wall, n / cpu, statistics.mean(first for _, first in runs)
