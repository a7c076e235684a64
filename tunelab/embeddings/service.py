"""The embedding service: one loaded model per id, one forward pass per batch.

Concurrent requests are micro-batched: a worker thread per model takes the first
waiting request, collects whatever else arrives within `window_ms` (up to
`max_batch` texts), encodes them together and hands each caller its rows. Under
load this turns N small forward passes into one large one; alone, a request waits
at most the window.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunelab.embeddings.protocol import Vectors
from tunelab.models.registry import ModelSpec, Registry


@dataclass
class _Request:
    texts: list[str]
    future: Future[Vectors] = field(default_factory=Future)


class _ModelWorker:
    def __init__(self, spec: ModelSpec, device: str, window_s: float, max_batch: int, bf16: bool):
        from tunelab.models.loading import load_sentence_transformer

        self.model = load_sentence_transformer(spec, device=device)
        # A fast tokenizer is not thread-safe (encode() changes its padding and
        # truncation state), so request threads count and decode with their own
        # copy, one at a time, while the worker thread encodes with the model's.
        self.tokenizer = copy.deepcopy(self.model.tokenizer)
        self.tokenizer_lock = threading.Lock()
        self.window_s = window_s
        self.max_batch = max_batch
        self.bf16 = bf16
        self.device = device
        self.queue: queue.Queue[_Request | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"embed-{spec.id}", daemon=True)
        self.thread.start()

    def submit(self, texts: list[str]) -> Vectors:
        req = _Request(texts)
        self.queue.put(req)
        return req.future.result()

    def stop(self) -> None:
        self.queue.put(None)

    def _collect(self, first: _Request) -> list[_Request]:
        batch, n = [first], len(first.texts)
        deadline = time.monotonic() + self.window_s
        while n < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                nxt = (
                    self.queue.get(timeout=max(timeout, 0))
                    if timeout > 0
                    else self.queue.get_nowait()
                )
            except queue.Empty:
                break
            if nxt is None:
                self.queue.put(None)  # let the loop see the stop after this batch
                break
            batch.append(nxt)
            n += len(nxt.texts)
        return batch

    def _run(self) -> None:
        import torch

        while (first := self.queue.get()) is not None:
            batch = self._collect(first)
            texts = [t for r in batch for t in r.texts]
            try:
                with (
                    torch.inference_mode(),
                    torch.autocast(
                        self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16
                    ),
                ):
                    vecs = self.model.encode(
                        texts,
                        batch_size=64,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    ).astype(np.float32, copy=False)
            except Exception as e:  # hand the failure to every waiting caller
                for r in batch:
                    r.future.set_exception(e)
                continue
            start = 0
            for r in batch:
                r.future.set_result(vecs[start : start + len(r.texts)])
                start += len(r.texts)


class EmbeddingService:
    """The sentence-transformers `Embedder`: models load on first use, one worker thread each."""

    def __init__(
        self,
        registry: Registry,
        *,
        device: str = "cpu",
        window_ms: float = 5.0,
        max_batch: int = 256,
        bf16: bool | None = False,
    ) -> None:
        """`device` may be "auto" (cuda when available) and `bf16` None (when the
        hardware has native bf16): both are decided when the first model loads, so
        building the service imports no torch."""
        self.registry = registry
        self.device = device
        self.window_s = window_ms / 1000
        self.max_batch = max_batch
        self.bf16 = bf16
        self._workers: dict[str, _ModelWorker] = {}
        self._lock = threading.Lock()

    def _resolve_hardware(self) -> tuple[str, bool]:
        from tunelab.hardware import bf16_fast, resolve_device

        device = resolve_device(self.device)
        return device, bf16_fast(device) if self.bf16 is None else self.bf16

    def _worker(self, model: str) -> _ModelWorker:
        spec = self.registry.get_kind(model, "embedding")
        with self._lock:
            if spec.id not in self._workers:
                device, bf16 = self._resolve_hardware()
                self._workers[spec.id] = _ModelWorker(
                    spec, device, self.window_s, self.max_batch, bf16
                )
            return self._workers[spec.id]

    def tokenizer(self, model: str) -> Any:
        """A private copy of the model's tokenizer, for a caller to use from one thread."""
        worker = self._worker(model)
        with worker.tokenizer_lock:
            return copy.deepcopy(worker.tokenizer)

    def vocab_size(self, model: str) -> int:
        return len(self._worker(model).tokenizer)

    def decode(self, model: str, ids: list[list[int]]) -> list[str]:
        worker = self._worker(model)
        with worker.tokenizer_lock:
            return [worker.tokenizer.decode(x, skip_special_tokens=True) for x in ids]

    def max_tokens(self, model: str) -> int:
        """The model's window: longer inputs are truncated to it."""
        return int(self._worker(model).model.max_seq_length)

    def dimensions(self, model: str) -> int:
        return int(self._worker(model).model.get_embedding_dimension())

    def count_tokens(self, model: str, texts: list[str]) -> list[int]:
        worker = self._worker(model)
        with worker.tokenizer_lock:
            enc = worker.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in enc]

    def embed(self, model: str, texts: list[str]) -> Vectors:
        """L2-normalised float32 vectors, one row per text, in order."""
        return self._worker(model).submit(texts)

    def close(self) -> None:
        with self._lock:
            for w in self._workers.values():
                w.stop()
            self._workers.clear()
