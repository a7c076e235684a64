"""The embedding service: one loaded model per id, one forward pass per batch.

Each model has a worker thread that owns it. Requests queue up while the worker
computes; when it is free it takes everything waiting (up to `max_batch` texts; for
at most `window_ms` it also waits for the callers it expects back, see `_collect`),
tokenises the lot once with the model's Rust tokenizer, checks each request's token
limits, sorts the texts by length, runs the model on forward passes of up to
FORWARD_TOKENS tokens and hands every caller its rows and token counts. BERT models
run on their packed tokens (tunelab.embeddings.lean_encoder, checked against
sentence-transformers when the model loads); others run sentence-transformers'
modules on padded sub-batches. Under load N small
requests become one large forward pass; alone, a request starts at once. Nothing is
tokenised twice, and the request path takes no lock: callers get a Future
(awaitable from asyncio).

Models trained with instructions get their prefixes here, from the registry entry:
`kind="query"` (searches, /v1/embeddings) or `kind="passage"` (indexed chunks).
Token counts are of the text as given: no prefix, no special tokens, not truncated.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab import compute
from tunelab.embeddings.protocol import Embedded, TextKind, TokenLimits, Vectors
from tunelab.errors import InvalidRequest
from tunelab.models.registry import ModelSpec, Registry

if TYPE_CHECKING:
    import torch

    from tunelab.embeddings.lean_encoder import LeanEncoder

log = logging.getLogger(__name__)

# Tokens per forward pass on a CPU, longest texts first. Measured with the lean encoder
# on the 2-core AVX512-BF16 machine: 512-4096 run within a few percent of each other
# (short texts and 256-token ones, MiniLM and e5), while 64 texts of 256 tokens in one
# pass ran 20% slower than in two. Small passes matter because a pass holds the compute
# thread (tunelab.compute) that generation steps wait for: with chat streaming while a
# store indexed 60 man pages, 512-token passes left chat 22 tokens/s, 2048 left it 10.
FORWARD_TOKENS = 512
# On a GPU passes run on the worker's own thread and want to be large (not measured
# here; 64 texts of 256 tokens is what the service ran before it counted tokens).
GPU_FORWARD_TOKENS = 16384
# The lean encoder's check when a model loads (`_checked`): texts of many lengths (so
# attention groups pad, and one is truncated), in two scripts. Cosines to the
# reference, MiniLM / e5: bf16 rounding 0.99996 / 0.99999 (as far as autocast is from
# fp32); CLS pooling on these mean-pooled models 0.41 / 0.90, a lost token type
# 0.46 / 0.988, positions off by two 0.52 / 0.96.
_SENTENCE = "The router's status light blinks orange when the firmware update fails. "
PROBE = [_SENTENCE * k for k in range(1, 21)] + [
    "如何把路由器恢复出厂设置？按住重置按钮十秒钟。",
    "a",
    "",
]
AGREEMENT = 0.999


@dataclass
class _Request:
    texts: list[str]
    kind: TextKind
    limits: TokenLimits | None
    future: Future[Embedded] = field(default_factory=Future)


class _ModelWorker:
    def __init__(
        self,
        spec: ModelSpec,
        cache_dir: Path,
        device: str,
        window_s: float,
        max_batch: int,
        bf16: bool,
    ):
        """Load the model and check the lean encoder (on the compute thread, see
        `_run`); returns once that is done, raising what loading raised."""
        self.window_s = window_s
        self.max_batch = max_batch
        self.expected = 1  # requests in the last batch
        self.bf16 = bf16
        self.device = device
        self.spec_id = spec.id
        self.queue: queue.Queue[_Request | None] = queue.Queue()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(spec, cache_dir), name=f"embed-{spec.id}", daemon=True
        )
        self.thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def _load(self, spec: ModelSpec, cache_dir: Path) -> None:
        from tunelab.models.loading import load_sentence_transformer

        self.model = load_sentence_transformer(spec, cache_dir, device=self.device).eval()
        # A private copy of the Rust tokenizer with no truncation or padding state:
        # the worker alone uses it, for every text, once.
        self.encoder = copy.deepcopy(self.model.tokenizer.backend_tokenizer)
        self.encoder.no_truncation()
        self.encoder.no_padding()
        self.pad_id = int(self.model.tokenizer.pad_token_id or 0)
        self.type_ids = "token_type_ids" in self.model.tokenizer.model_input_names
        self.max_len = int(self.model.max_seq_length or self.model.tokenizer.model_max_length)
        dims = self.model.get_embedding_dimension()
        if dims is None:
            raise ValueError(f"{spec.id}: the model does not say how long its vectors are")
        self.dims = int(dims)
        self.prefix: dict[TextKind, str] = {
            "query": spec.query_prefix,
            "passage": spec.passage_prefix,
        }
        self.prefix_tokens: dict[TextKind, int] = {
            kind: len(self.encoder.encode(p.rstrip(), add_special_tokens=False).ids) if p else 0
            for kind, p in self.prefix.items()
        }
        # The HF tokenizer is not thread-safe (calls change its padding and truncation
        # state): request threads count and decode with their own copy, one at a time.
        self.tokenizer = copy.deepcopy(self.model.tokenizer)
        self.tokenizer_lock = threading.Lock()
        self.lean = self._checked(self._lean_encoder())

    def submit(
        self, texts: list[str], kind: TextKind, limits: TokenLimits | None
    ) -> Future[Embedded]:
        req = _Request(texts, kind, limits)
        self.queue.put(req)
        return req.future

    def stop(self) -> None:
        self.queue.put(None)

    def _collect(self, first: _Request) -> list[_Request]:
        """Everything already waiting; then, up to the window, the callers expected back.

        Callers just served tend to send again at once (concurrent clients in a loop,
        ingestion), so while fewer requests are here than the last batch had, waiting a
        few ms for them keeps batches full. A lone caller (last batch: 1 request) never
        waits.
        """
        batch, n = [first], len(first.texts)
        deadline = time.monotonic() + self.window_s
        while n < self.max_batch:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                timeout = deadline - time.monotonic()
                if len(batch) >= self.expected or timeout <= 0:
                    break
                try:
                    nxt = self.queue.get(timeout=timeout)
                except queue.Empty:
                    break
            if nxt is None:
                self.queue.put(None)  # let the loop see the stop after this batch
                break
            batch.append(nxt)
            n += len(nxt.texts)
        self.expected = len(batch)
        return batch

    def _run(self, spec: ModelSpec, cache_dir: Path) -> None:
        # Loading, the lean encoder's check and every forward pass run on the process's
        # compute thread (tunelab.compute): one thread runs all model work on a CPU.
        try:
            compute.run(self._load, spec, cache_dir, device=self.device)
        except BaseException as e:  # the constructor raises it on its own thread
            self._failure = e
            return
        finally:
            self._ready.set()
        while (first := self.queue.get()) is not None:
            # A caller that went away (its awaiting task was cancelled) is dropped here;
            # from now on its Future can no longer be cancelled under us.
            batch = [r for r in self._collect(first) if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                self._serve(batch)
            except Exception as e:  # hand the failure to every waiting caller
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)

    def _serve(self, batch: list[_Request]) -> None:
        encodings = self.encoder.encode_batch(
            [self.prefix[r.kind] + t for r in batch for t in r.texts], add_special_tokens=True
        )
        ids: list[list[int]] = []
        accepted: list[tuple[_Request, list[int]]] = []
        start = 0
        for r in batch:
            mine = encodings[start : start + len(r.texts)]
            start += len(r.texts)
            skip = self.prefix_tokens[r.kind]
            counts = [max(len(e.ids) - sum(e.special_tokens_mask) - skip, 0) for e in mine]
            if r.limits is not None:
                try:
                    r.limits.check(counts)
                except InvalidRequest as e:
                    r.future.set_exception(e)
                    continue
            accepted.append((r, counts))
            ids.extend(self._truncated(e) for e in mine)
        if not accepted:
            return
        vectors = self._forward(ids)
        start = 0
        for r, counts in accepted:
            r.future.set_result(Embedded(vectors[start : start + len(r.texts)], counts))
            start += len(r.texts)

    def _truncated(self, encoding: Any) -> list[int]:
        """At most the model's window, keeping the closing special tokens (as
        sentence-transformers' truncation does)."""
        ids: list[int] = encoding.ids
        if len(ids) <= self.max_len:
            return ids
        mask = encoding.special_tokens_mask
        tail = 0
        while tail < len(mask) and mask[len(mask) - 1 - tail]:
            tail += 1
        return ids[: self.max_len - tail] + ids[len(ids) - tail :]

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        """Normalised embeddings for token id lists, longest first in passes of at
        most FORWARD_TOKENS tokens on a CPU (a longer text runs alone)."""
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.empty((len(ids), self.dims), dtype=np.float32)
        run = self.lean or self._reference
        budget = FORWARD_TOKENS if self.device.startswith("cpu") else GPU_FORWARD_TOKENS
        start = 0
        while start < len(order):
            end, tokens = start + 1, len(ids[order[start]])
            while end < len(order) and tokens + len(ids[order[end]]) <= budget:
                tokens += len(ids[order[end]])
                end += 1
            group = order[start:end]
            # One pass at a time, so a generation step waits for at most one.
            out[group] = compute.run(_vectors, run, [ids[i] for i in group], device=self.device)
            start = end
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _reference(self, ids: list[list[int]]) -> torch.Tensor:
        """sentence-transformers' own forward on the texts padded to the longest."""
        import torch

        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        features = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }
        if self.type_ids:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        device_type = self.device.split(":")[0]
        with (
            torch.inference_mode(),
            torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16),
        ):
            out: torch.Tensor = self.model(features)["sentence_embedding"]
        return out

    def _lean_encoder(self) -> LeanEncoder | None:
        import torch

        from tunelab.embeddings.lean_encoder import build

        return build(self.model, torch.bfloat16 if self.bf16 else torch.float32)

    def _checked(self, lean: LeanEncoder | None) -> LeanEncoder | None:
        """`lean` if it gives sentence-transformers' embeddings on PROBE (cosine >=
        AGREEMENT, every text), else None: the reference forward serves for good."""
        if lean is None:
            return None
        import torch.nn.functional as F

        ids = [self._truncated(e) for e in self.encoder.encode_batch(PROBE)]
        want = F.normalize(self._reference(ids).float(), dim=1)
        try:
            got = F.normalize(lean(ids).float(), dim=1)
        except Exception:  # a variant `build` did not foresee: the reference serves
            log.exception("the lean encoder failed on %s", self.spec_id)
            return None
        cosine = float((got * want).sum(1).min())
        if cosine >= AGREEMENT:
            return lean
        log.warning(
            "the lean encoder disagrees with sentence-transformers on %s (cosine %.5f); "
            "using sentence-transformers' forward",
            self.spec_id,
            cosine,
        )
        return None


def _vectors(run: Callable[[list[list[int]]], torch.Tensor], ids: list[list[int]]) -> np.ndarray:
    out: np.ndarray = run(ids).float().cpu().numpy()
    return out


class EmbeddingService:
    """The sentence-transformers `Embedder`: models load on first use, one worker thread each."""

    def __init__(
        self,
        registry: Registry,
        cache_dir: Path,
        *,
        device: str = "cpu",
        window_ms: float = 5.0,
        max_batch: int = 256,
        bf16: bool | None = False,
    ) -> None:
        """`device` may be "auto" (cuda when available) and `bf16` None (when the
        hardware has native bf16): both are decided when the first model loads, so
        building the service imports no torch. Converted models are cached in
        `cache_dir`."""
        self.registry = registry
        self.cache_dir = cache_dir
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
                    spec, self.cache_dir, device, self.window_s, self.max_batch, bf16
                )
            return self._workers[spec.id]

    def loaded(self, model: str) -> bool:
        """Whether the model is in memory (the first use loads it, which takes seconds)."""
        return self.registry.get_kind(model, "embedding").id in self._workers

    def load(self, model: str) -> None:
        self._worker(model)

    def queue_depths(self) -> dict[str, int]:
        """Requests waiting per loaded model (for /metrics)."""
        with self._lock:
            workers = dict(self._workers)
        return {model: w.queue.qsize() for model, w in workers.items()}

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
        """The longest passage (special tokens included) embedded whole: the model's
        window less what the passage prefix takes. Longer inputs are truncated."""
        worker = self._worker(model)
        return worker.max_len - worker.prefix_tokens["passage"]

    def dimensions(self, model: str) -> int:
        return self._worker(model).dims

    def count_tokens(self, model: str, texts: list[str]) -> list[int]:
        worker = self._worker(model)
        enc = worker.encoder.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in enc]

    def submit(
        self,
        model: str,
        texts: list[str],
        *,
        kind: TextKind = "query",
        limits: TokenLimits | None = None,
    ) -> Future[Embedded]:
        """Queue texts for embedding; the Future raises InvalidRequest over `limits`."""
        return self._worker(model).submit(texts, kind, limits)

    def embed(self, model: str, texts: list[str], *, kind: TextKind = "query") -> Vectors:
        """L2-normalised float32 vectors, one row per text, in order."""
        return self.submit(model, texts, kind=kind).result().vectors

    def close(self) -> None:
        with self._lock:
            for w in self._workers.values():
                w.stop()
            self._workers.clear()
