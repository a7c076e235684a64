"""Embeddings throughput: tunelab's /v1/embeddings vs plain SentenceTransformer.encode.

Runs a real tunelab server in this process (real HTTP, the official openai SDK as
client) and the plain library on the same texts in the same run, and prints
texts/s, tokens/s and the ratio. 8 concurrent clients show what micro-batching
buys. Also reports achieved FLOP/s against the machine's measured fp32 matmul peak.

    .venv/bin/python benchmarks/embeddings.py [--texts 512]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tests.support import run_server, sdk
from tunelab.models.loading import load_sentence_transformer
from tunelab.models.registry import MINILM, Registry
from tunelab.settings import Settings

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


def matmul_peak() -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    return 2 * 1024**3 * reps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=512)
    args = ap.parse_args()
    texts = corpus(args.texts)

    model = load_sentence_transformer(Registry.load().get(MINILM))
    n_tokens = sum(
        len(ids) for ids in model.tokenizer(texts, add_special_tokens=False)["input_ids"]
    )
    # Embedding tables are lookups, not matmuls: count only the compute weights.
    params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    model.encode(texts[:64])  # warm up
    t = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    plain = time.perf_counter() - t

    rows = [("plain SentenceTransformer.encode (batch 64)", plain)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), embedded_worker=False)
        with run_server(settings) as url:
            client = sdk(url)
            client.embeddings.create(model=MINILM, input=texts[:64])  # load + warm up
            t = time.perf_counter()
            for i in range(0, len(texts), 64):
                client.embeddings.create(model=MINILM, input=texts[i : i + 64])
            rows.append(("tunelab, 1 client, 64 texts/request", time.perf_counter() - t))

            t = time.perf_counter()
            for i in range(0, len(texts), 8):
                client.embeddings.create(model=MINILM, input=texts[i : i + 8])
            rows.append(("tunelab, 1 client, 8 texts/request", time.perf_counter() - t))

            def one(i: int) -> None:
                client.embeddings.create(model=MINILM, input=texts[i : i + 8])

            t = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(one, range(0, len(texts), 8)))
            rows.append(("tunelab, 8 concurrent clients, 8 texts/request", time.perf_counter() - t))

    peak = matmul_peak()
    print(
        f"\n{len(texts)} texts, {n_tokens} tokens, MiniLM ({params / 1e6:.1f}M non-embedding params)"
    )
    print(f"fp32 matmul peak on this machine: {peak / 1e9:.0f} GFLOP/s\n")
    print(f"{'run':50} {'texts/s':>9} {'tokens/s':>9} {'vs plain':>9} {'% of peak':>9}")
    for name, secs in rows:
        flops = 2 * params * n_tokens / secs
        print(
            f"{name:50} {len(texts) / secs:9.0f} {n_tokens / secs:9.0f} {plain / secs:8.2f}x {100 * flops / peak:8.1f}%"
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
