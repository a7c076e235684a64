"""Checkpoints through S3: what publishing and fetching cost over plain boto3 transfers.

A checkpoint folder of the given size (a safetensors-sized random file, its config
and a trainer state of twice its size, as AdamW keeps) on moto's S3 server over
loopback HTTP, in the same run:

- publish (`Weights.publish`: trainer state, then the folder as one tar) against
  uploading the same files one by one with boto3's `upload_file`, the best a user
  would do by hand;
- fetch for serving (`Weights.local`: model.tar, unpacked, renamed into place)
  against downloading the model files with `download_file`;
- the local store, which does neither (`publish` and `local` return at once).

moto is in-process Python, so absolute numbers say little about real S3; the
ratios say what the tar, the temporary files and the rename add.

    .venv/bin/python benchmarks/weights_blobs.py [--mb 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tunelab.models.weights import STATE_FILE, Weights
from tunelab.s3blobs import S3BlobStore

BUCKET = "bench"


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64, help="size of the model weights")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(k, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=url)
        client.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            ckpt = root / "a" / "ftjob-bench" / "step-1"
            ckpt.mkdir(parents=True)
            (ckpt / "adapter_config.json").write_text('{"r": 16}')
            (ckpt / "adapter_model.safetensors").write_bytes(os.urandom(args.mb << 20))
            (ckpt / STATE_FILE).write_bytes(os.urandom(2 * args.mb << 20))
            store = S3BlobStore(f"s3://{BUCKET}/w", root / "cache", endpoint_url=url)
            writer = Weights(root / "a", store)

            def by_hand_up() -> None:
                for f in ckpt.iterdir():
                    client.upload_file(str(f), BUCKET, f"hand/{f.name}")

            def by_hand_down() -> None:
                out = root / "hand"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                for f in ckpt.iterdir():
                    if f.name != STATE_FILE:
                        client.download_file(BUCKET, f"hand/{f.name}", str(out / f.name))

            reader = Weights(root / "b", store)
            target = reader.path("ftjob-bench/step-1")

            def fetch() -> None:
                shutil.rmtree(target, ignore_errors=True)
                reader.local(target)

            up_hand = best(by_hand_up, args.repeat)
            up = best(lambda: writer.publish(ckpt), args.repeat)
            down_hand = best(by_hand_down, args.repeat)
            down = best(fetch, args.repeat)
            local = Weights(root / "a")
            noop = best(lambda: (local.publish(ckpt), local.local(ckpt)), args.repeat)
    finally:
        server.stop()

    mb, n = args.mb, args.repeat
    print(f"checkpoint: {mb} MiB weights + {2 * mb} MiB trainer state, best of {n}")
    print(f"publish {up:7.3f} s  boto3 upload, each file {up_hand:7.3f} s  x{up / up_hand:.2f}")
    print(
        f"fetch   {down:7.3f} s  boto3 download, model {down_hand:7.3f} s  x{down / down_hand:.2f}"
    )
    print(f"local store publish + local: {noop * 1e6:.1f} us (no copy)")


if __name__ == "__main__":
    main()
