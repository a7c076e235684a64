"""Embeddings throughput: /v1/embeddings against in-process SentenceTransformer.encode.

The server runs as `tunelab serve` in its own process and this process is the client
(the official openai SDK, which asks for base64), so the numbers include real HTTP,
JSON and a client that does not share the server's GIL. The baseline is what a user
would otherwise write: the same model, loaded the same way, calling `encode` in this
process on the same texts (with the same query prefix), the same batch and the same
dtype (bf16 autocast only where the CPU has native bf16, as the server decides).

Rows, for each model:
  plain encode, batch 64             the best in-process throughput
  plain encode, batch 8              what one caller with 8 texts at a time gets
  tunelab, 1 client, 64 texts/request     vs batch 64
  tunelab, 1 client, 8 texts/request      vs batch 8 (the same batch)
  tunelab, 8 clients, 8 texts/request     vs batch 64 (the server batches them together)
(same batch: the ratio a caller sees against doing the same calls in-process)

Each row is the best of --rounds runs, interleaved (baseline, server, baseline, ...)
so a busy machine slows both sides alike. Next to the wall-clock ratio it prints the
CPU-time ratio: the CPU seconds the baseline spends on the texts over the CPU seconds
the server and the client spend together. On an idle machine the two agree; on a
shared one (other processes taking turns on the same cores) wall-clock ratios swing
with the scheduler while the CPU ratio stays put, so it is the one to compare there.
Also prints achieved FLOP/s against this machine's matmul peak in the serving dtype
(the fastest product of the models' layer shape, measured in the same run).

    .venv/bin/python benchmarks/embeddings.py [--texts 512] [--rounds 3] [--model ID ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402

from tunelab.hardware import bf16_fast  # noqa: E402
from tunelab.models.loading import load_sentence_transformer  # noqa: E402
from tunelab.models.registry import E5_SMALL, MINILM, Registry  # noqa: E402
from tunelab.settings import Settings  # noqa: E402

SENTENCES = [
    "The router's status light blinks orange when the firmware update fails.",
    "Hold the reset button for ten seconds to restore factory settings.",
    "Our support team answers within one business day.",
    "Battery life depends on screen brightness and background apps.",
    "To pair the headset, open Bluetooth settings and select the device.",
    "Refunds are issued to the original payment method within 5 days.",
]


def corpus(n: int) -> list[str]:
    # Varied lengths (1-4 sentences), like real passages and queries.
    return [
        " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 4)) + f" #{i}"
        for i in range(n)
    ]


def matmul_peak(bf16: bool) -> float:
    """FLOP/s of this machine's fastest product of the models' shape (2048 tokens by a
    384 -> 1536 layer) in the serving dtype: `F.linear`, or on oneDNN's packed weight
    where this torch has it (what the server's encoder uses)."""
    import torch
    import torch.nn.functional as F

    from tunelab.models.packed import linear, usable

    dtype = torch.bfloat16 if bf16 else torch.float32
    x, w = torch.randn(2048, 384, dtype=dtype), torch.randn(1536, 384, dtype=dtype)
    products: list[Callable[[], object]] = [lambda: F.linear(x, w)]
    if usable(x, w):
        products.append(lambda: linear(x, w, None))
    best = 0.0
    for product in products:
        for _ in range(3):
            product()
        reps, t = 20, time.perf_counter()
        for _ in range(reps):
            product()
        best = max(best, 2 * 2048 * 384 * 1536 * reps / (time.perf_counter() - t))
    return best


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(cache_dir: Path) -> Iterator[tuple[str, int]]:
    """`tunelab serve` in its own process on a free loopback port: (base URL, pid)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")}
        env.update(
            TUNELAB_CACHE_DIR=str(cache_dir), TUNELAB_EMBEDDED_WORKER="false", HF_HUB_OFFLINE="1"
        )
        cmd = [sys.executable, "-m", "tunelab", "serve", "--port", str(port), "--data-dir", tmp]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("tunelab serve did not start")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            yield url, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def timed(fn: Callable[[], object], server_pid: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and the server together)."""
    t, cpu, srv = time.perf_counter(), time.process_time(), cpu_seconds(server_pid)
    fn()
    cpu = time.process_time() - cpu + cpu_seconds(server_pid) - srv
    return time.perf_counter() - t, cpu


def bench_model(model_id: str, texts: list[str], rounds: int, cache_dir: Path) -> None:
    import torch

    spec = Registry.load().get(model_id)
    model = load_sentence_transformer(spec, cache_dir)
    tok = model.tokenizer
    inputs = [spec.query_prefix + t for t in texts]  # the server adds the same prefix
    n_tokens = sum(len(ids) for ids in tok(inputs)["input_ids"])
    # Embedding tables are lookups, not matmuls: count only the compute weights.
    params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    bf16 = bf16_fast("cpu")

    def plain(batch: int) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(inputs), batch):
                model.encode(inputs[i : i + batch], batch_size=batch, normalize_embeddings=True)

    times: dict[str, float] = {}
    cpus: dict[str, float] = {}

    def best(name: str, measured: tuple[float, float]) -> None:
        times[name] = min(times.get(name, float("inf")), measured[0])
        cpus[name] = min(cpus.get(name, float("inf")), measured[1])

    plain(64)  # warm up
    with server_process(cache_dir) as (url, pid):
        client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)

        def requests(size: int, clients: int) -> None:
            def one(i: int) -> None:
                client.embeddings.create(model=model_id, input=texts[i : i + size])

            starts = range(0, len(texts), size)
            if clients == 1:
                for i in starts:
                    one(i)
            else:
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(one, starts))

        requests(64, 1)  # load the model in the server, warm up
        for _ in range(rounds):
            best("plain encode, batch 64", timed(lambda: plain(64), pid))
            best("tunelab, 1 client, 64 texts/request", timed(lambda: requests(64, 1), pid))
            best("tunelab, 8 clients, 8 texts/request", timed(lambda: requests(8, 8), pid))
            best("plain encode, batch 8", timed(lambda: plain(8), pid))
            best("tunelab, 1 client, 8 texts/request", timed(lambda: requests(8, 1), pid))

    baseline = {
        "tunelab, 1 client, 64 texts/request": "plain encode, batch 64",
        "tunelab, 8 clients, 8 texts/request": "plain encode, batch 64",
        "tunelab, 1 client, 8 texts/request": "plain encode, batch 8",
    }
    peak = matmul_peak(bf16)
    print(
        f"\n{model_id}: {len(texts)} texts, {n_tokens} tokens, "
        f"{params / 1e6:.1f}M non-embedding params, {'bf16 autocast' if bf16 else 'fp32'}; "
        f"matmul peak in that dtype {peak / 1e9:.0f} GFLOP/s"
    )
    print(
        f"{'run':40} {'texts/s':>8} {'tokens/s':>9} {'vs plain, wall':>15} "
        f"{'vs plain, CPU':>14} {'% peak':>7}"
    )
    for name in (
        "plain encode, batch 64",
        "plain encode, batch 8",
        "tunelab, 1 client, 64 texts/request",
        "tunelab, 1 client, 8 texts/request",
        "tunelab, 8 clients, 8 texts/request",
    ):
        secs = times[name]
        wall = f"{times[baseline[name]] / secs:.2f}x" if name in baseline else ""
        cpu = f"{cpus[baseline[name]] / cpus[name]:.2f}x" if name in baseline else ""
        flops = 2 * params * n_tokens / secs
        print(
            f"{name:40} {len(texts) / secs:8.0f} {n_tokens / secs:9.0f} {wall:>15} "
            f"{cpu:>14} {100 * flops / peak:6.1f}%"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", action="append", help=f"default: {E5_SMALL} and {MINILM}")
    args = ap.parse_args()
    cache_dir = Settings().model_cache_dir  # the converted models a server would use
    for model_id in args.model or [E5_SMALL, MINILM]:
        bench_model(model_id, corpus(args.texts), args.rounds, cache_dir)


if __name__ == "__main__":
    main()
