"""Do two API replicas serve more than one? Embeddings and chat requests per second.

A bounded loopback load test of the deployment in docs/deployment.md: a throwaway
PostgreSQL (Debian's server, as the tests start it), then `tunelab serve`
processes on it sharing one data directory (no embedded job worker), and a load
generator in a process of its own: a fixed number of concurrent clients, each
sending requests back to back for a fixed time, spread round-robin over the
replicas' URLs (what a load balancer in front of them does). Every response is
checked (status 200, the right number of vectors or tokens); failed requests are
counted and reported, never counted as served.

Configurations, measured in one run:
  1 replica                        torch uses every core (the default)
  2 replicas, cores split          OMP_NUM_THREADS = cores / 2 in each, what an
                                   operator sets when replicas share a machine
  2 replicas, threads not split    each replica's torch uses every core

On one machine two replicas share its cores, so the gain is what one process
leaves unused (its single Python thread for HTTP and JSON, waits between batches);
on two machines each replica has its own.

    .venv/bin/python benchmarks/replicas.py [--seconds 20] [--embed-clients 16] [--chat-clients 8]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import available, cluster
from tests.support import serve_process
from tunelab.settings import Settings

EMBED_MODEL = "all-minilm-l6-v2"
CHAT_MODEL = "smollm2-135m-instruct"
CHAT_TOKENS = 16
HEADERS = {"Authorization": "Bearer bench"}
# Sentences of ordinary length, each request a different one.
SENTENCE = (
    "the service keeps every vector store in the database so that any replica can "
    "answer a search while another one ingests new files for the same project"
)
WORDS = SENTENCE.split(" ")


def _text(i: int) -> str:
    rotated = WORDS[i % len(WORDS) :] + WORDS[: i % len(WORDS)]
    return f"request {i}: " + " ".join(rotated)


def _request(http: Any, kind: str, url: str, i: int) -> bool:
    """One request; True when it was served in full."""
    import httpx

    try:
        if kind == "embeddings":
            r = http.post(f"{url}/v1/embeddings", json={"model": EMBED_MODEL, "input": _text(i)})
            return r.status_code == 200 and len(r.json()["data"]) == 1
        r = http.post(
            f"{url}/v1/chat/completions",
            json={
                "model": CHAT_MODEL,
                "messages": [{"role": "user", "content": _text(i)}],
                "max_tokens": CHAT_TOKENS,
                "temperature": 0,
                "logit_bias": {"2": -100},  # no end-of-turn: every answer as long
            },
        )
        return r.status_code == 200 and r.json()["usage"]["completion_tokens"] == CHAT_TOKENS
    except httpx.HTTPError:
        return False


def _warm(url: str) -> None:
    """Load both models in a replica before anything is measured."""
    import httpx

    with httpx.Client(timeout=300, headers=HEADERS) as http:
        for kind in ("embeddings", "chat"):
            if not _request(http, kind, url, 0):
                raise SystemExit(f"{kind} request to {url} failed")


def _load(kind: str, urls: list[str], clients: int, seconds: float) -> tuple[int, int, float]:
    """(served, failed, elapsed seconds): `clients` threads, back to back, round-robin."""
    import httpx

    targets = itertools.cycle(urls)
    counter = itertools.count()
    deadline = time.monotonic() + seconds

    def client() -> tuple[int, int]:
        served = failed = 0
        with httpx.Client(timeout=120, headers=HEADERS) as http:
            while time.monotonic() < deadline:
                ok = _request(http, kind, next(targets), next(counter))
                served, failed = served + ok, failed + (not ok)
        return served, failed

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: client(), range(clients)))
    return sum(s for s, _ in results), sum(f for _, f in results), time.monotonic() - start


def _in_own_process(
    kind: str, urls: list[str], clients: int, seconds: float
) -> tuple[int, int, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_load, (kind, urls, clients, seconds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--embed-clients", type=int, default=16)
    ap.add_argument("--chat-clients", type=int, default=8)
    args = ap.parse_args()
    if not available():
        raise SystemExit("PostgreSQL is not installed: run `make system-deps` first")
    cores = os.cpu_count() or 1
    configs = [
        ("1 replica", 1, {}),
        ("2 replicas, cores split", 2, {"OMP_NUM_THREADS": str(max(1, cores // 2))}),
        ("2 replicas, threads not split", 2, {}),
    ]
    rows: list[tuple[str, float, int, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp, cluster() as db_url:
        base = Settings(data_dir=Path(tmp) / "data", api_keys="bench")
        for name, n, env in configs:
            with ExitStack() as stack:
                urls = [
                    stack.enter_context(
                        serve_process(
                            base,
                            log=Path(tmp) / f"serve-{len(rows)}-{k}.log",
                            TUNELAB_DATABASE_URL=db_url,
                            TUNELAB_EMBEDDED_WORKER="false",
                            **env,
                        )
                    )[0]
                    for k in range(n)
                ]
                for url in urls:
                    _warm(url)
                e_ok, e_bad, e_t = _in_own_process(
                    "embeddings", urls, args.embed_clients, args.seconds
                )
                c_ok, c_bad, c_t = _in_own_process("chat", urls, args.chat_clients, args.seconds)
            rows.append((name, e_ok / e_t, e_bad, c_ok / c_t, c_bad))
            print(
                f"{name}: {e_ok / e_t:.1f} embeddings req/s, {c_ok / c_t:.2f} chat req/s",
                flush=True,
            )

    one_e, one_c = rows[0][1], rows[0][3]
    print(
        f"\n{cores} cores; {args.embed_clients} embedding clients (1 text each), "
        f"{args.chat_clients} chat clients ({CHAT_TOKENS} tokens each), "
        f"{args.seconds:g} s per phase\n"
    )
    print(f"{'configuration':32} {'embed req/s':>11} {'vs 1':>6} {'failed':>6}   "
          f"{'chat req/s':>10} {'vs 1':>6} {'failed':>6}")  # fmt: skip
    for name, e, e_bad, c, c_bad in rows:
        print(f"{name:32} {e:11.1f} {e / one_e:5.2f}x {e_bad:6d}   "
              f"{c:10.2f} {c / one_c:5.2f}x {c_bad:6d}")  # fmt: skip


if __name__ == "__main__":
    main()
