"""Embedding batches: a Batch API batch vs in-process SentenceTransformer.encode.

The same texts, the same model, in the same run: (1) plain
`SentenceTransformer.encode` (batch 64), the best a user could do in their own
process; (2) the embedding service alone (tunelab's batching engine);
(3) a whole batch through the batch worker: validating the input file, running
the lines in chunks with their results saved as they finish, and writing the
output file. The ratios say what the batch machinery (per-line JSON bodies and
results, the database, the output file) costs on top of the engine.

    .venv/bin/python benchmarks/batches.py [--lines 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.embeddings import corpus
from tunelab.batches.executors import EmbeddingsExecutor
from tunelab.batches.service import BatchService
from tunelab.batches.worker import BatchWorker
from tunelab.hardware import resolve_device
from tunelab.models.loading import load_sentence_transformer
from tunelab.models.registry import MINILM, Registry
from tunelab.protocol.batches import BatchCreate
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

ENDPOINT = "/v1/embeddings"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=256, help="lines per worker chunk")
    args = ap.parse_args()
    texts = corpus(args.lines)

    model = load_sentence_transformer(Registry.load().get(MINILM))
    model.encode(texts[:64])  # warm up

    def plain_encode() -> float:
        t = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True)
        return time.perf_counter() - t

    plain = plain_encode()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        rt = build_runtime(settings, embedded_worker=False)
        db, files, registry, embeddings = rt.db, rt.files, rt.registry, rt.embeddings
        embeddings.embed(MINILM, texts[:64])  # load and warm up
        t = time.perf_counter()
        embeddings.embed(MINILM, texts)
        engine = time.perf_counter() - t

        lines = [
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": ENDPOINT,
                "body": {"model": "text-embedding-3-small", "input": text},
            }
            for i, text in enumerate(texts)
        ]
        data = "".join(json.dumps(x) + "\n" for x in lines).encode()
        row = files.create_from_bytes(project="p", filename="in.jsonl", purpose="batch", data=data)
        service = BatchService(db, files, (ENDPOINT,))
        executor = EmbeddingsExecutor(registry, embeddings, chunk_size=args.chunk)
        worker = BatchWorker(db, files, {ENDPOINT: executor}, pause_s=0.0)
        t = time.perf_counter()
        batch = service.create(
            "p", BatchCreate(input_file_id=row.id, endpoint=ENDPOINT, completion_window="24h")
        )
        while worker.step():
            pass
        batched = time.perf_counter() - t
        done = service.get("p", batch.id)
        assert done.status == "completed" and done.request_counts.completed == len(texts)
        rt.close()
    # The baseline again, after: on a shared machine the better of the two is fairer.
    plain = min(plain, plain_encode())

    n = len(texts)
    print(f"{n} texts, MiniLM-L6 on {resolve_device(settings.device)}, chunk {args.chunk} lines")
    print(f"{'':56} {'seconds':>8} {'texts/s':>9} {'vs plain':>9}")
    for name, secs in [
        ("plain SentenceTransformer.encode (batch 64), best of 2", plain),
        ("tunelab embedding service, one call", engine),
        ("Batch API batch (validate, run, output file)", batched),
    ]:
        print(f"{name:56} {secs:8.2f} {n / secs:9.0f} {plain / secs:8.2f}x")


if __name__ == "__main__":
    main()
