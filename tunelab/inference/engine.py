"""Which loaded model serves a request: shared bases, hot adapters, full fine-tunes.

- A base model is loaded once (`load_causal_lm`) and gets one `GenerationWorker`;
  that worker serves the base and every LoRA fine-tune or checkpoint of it,
  attaching adapters on first use (LRU of `settings.adapter_cache_size`).
- A full fine-tune is its own model with its own worker. Those are kept under
  `settings.full_model_memory_mb` (weights' bytes); the least recently used idle
  one is unloaded to make room.

Loading happens on the first request for a model (its cold start, about a
second for SmolLM2 once converted); `preload()` does it ahead of time.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tunelab import compute
from tunelab.errors import ModelUnavailable, Overloaded
from tunelab.hardware import bf16_fast, resolve_device
from tunelab.inference.forward import TorchForward
from tunelab.inference.handle import AdapterRef, Generation, SamplingParams
from tunelab.inference.protocol import Target, Tokenizer
from tunelab.inference.worker import GenerationWorker
from tunelab.models.registry import ModelSpec
from tunelab.settings import Settings

log = logging.getLogger(__name__)


def _adapter_key(path: Path) -> str:
    # peft adapter names become module-dict keys: no dots or colons allowed.
    return "a" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]


Worker = GenerationWorker[TorchForward]


def _param_bytes(model: Any) -> int:
    from tunelab.models.packed import packed_bytes

    # (a fused q/k/v or gate/up form of the lean step takes its members' packed place)
    weights = sum(int(p.numel() * p.element_size()) for p in model.parameters())
    return weights + packed_bytes(model)


class InferenceEngine:
    """The transformers `ChatEngine`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._bases: dict[str, Worker] = {}
        self._full: OrderedDict[str, tuple[Worker, int]] = OrderedDict()
        self._lock = threading.Lock()

    def _dtype(self) -> Any:
        import torch

        name = self._settings.inference_dtype
        if name == "auto":
            name = "bfloat16" if bf16_fast(resolve_device(self._settings.device)) else "float32"
        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]

    def _new_worker(self, name: str, model: Any, tokenizer: Any, adapters: int) -> Worker:
        s = self._settings
        return GenerationWorker(
            TorchForward(model, adapters, s.merged_adapter_memory_mb * 2**20),
            tokenizer,
            name=name,
            max_batch=s.max_batch_size,
            max_queued=s.max_queued_requests,
            device=resolve_device(s.device),
        )

    def worker(self, target: Target) -> Worker:
        """The worker that serves `target`, loading its model on first use."""
        if target.kind != "full":
            loaded = self._bases.get(
                target.base.id
            )  # no lock: a cold load must not stall warm models
            if loaded is not None:
                return loaded
        with self._lock:
            if target.kind == "full":
                return self._full_worker(target)
            worker = self._bases.get(target.base.id)
            if worker is None:
                worker = self._load_base(target.base)
                self._bases[target.base.id] = worker
            return worker

    def _load_model(self, spec: ModelSpec) -> Any:
        from tunelab.models.loading import load_causal_lm
        from tunelab.models.packed import pack_linears

        s = self._settings
        device = resolve_device(s.device)
        # On the compute thread, like every step that runs it (tunelab.compute).
        load = functools.partial(
            load_causal_lm, spec, s.model_cache_dir, device=device, dtype=self._dtype()
        )
        model = compute.run(load, device=device)
        if s.packed_weights:
            pack_linears(model)
        return model

    def _load_base(self, spec: ModelSpec) -> Worker:
        from tunelab.models.loading import load_tokenizer

        s = self._settings
        model = self._load_model(spec)
        tokenizer = load_tokenizer(spec, s.model_cache_dir)
        log.info("loaded base model %s", spec.id)
        return self._new_worker(spec.id, model, tokenizer, s.adapter_cache_size)

    def _full_worker(self, target: Target) -> Worker:
        from tunelab.models.loading import load_tokenizer

        if target.id in self._full:
            self._full.move_to_end(target.id)
            return self._full[target.id][0]
        path = target.path
        if path is None or not (path / "config.json").exists():
            raise ModelUnavailable(
                f"The weights of model '{target.id}' are missing; delete it and fine-tune again.",
                param="model",
            )
        s = self._settings
        # The fine-tune's own directory is a model source like any other.
        spec = ModelSpec(
            id=target.id, kind="chat", source=str(path), context_length=target.base.context_length
        )
        model = self._load_model(spec)
        has_tokenizer = (path / "tokenizer_config.json").exists()
        tokenizer = load_tokenizer(spec if has_tokenizer else target.base, s.model_cache_dir)
        size = _param_bytes(model)
        self._make_room(size)
        self._full[target.id] = (self._new_worker(target.id, model, tokenizer, 1), size)
        return self._full[target.id][0]

    def _make_room(self, size: int) -> None:
        budget = self._settings.full_model_memory_mb * 2**20
        used = sum(n for _, n in self._full.values())
        for model_id in list(self._full):
            if used + size <= budget:
                return
            worker, n = self._full[model_id]
            if worker.idle:
                worker.close()
                del self._full[model_id]
                used -= n
                log.info("unloaded full fine-tune %s to stay under the memory budget", model_id)
        if used + size > budget and self._full:
            raise Overloaded(
                "Full fine-tuned models are busy and memory is full. Retry shortly.", retry_after=5
            )

    def tokenizer(self, target: Target) -> Tokenizer:
        return self.worker(target).tokenizer

    def context_length(self, target: Target) -> int:
        return context_length(target, self.worker(target))

    def submit(self, target: Target, prompt_ids: list[int], params: SamplingParams) -> Generation:
        """Queue a generation; raises Overloaded when the model's queue is full."""
        worker = self.worker(target)
        tok = worker.tokenizer
        adapter = adapter_ref(target) if target.kind == "lora" else None
        gen = Generation(
            prompt_ids, params, stop_token_ids=stop_token_ids(tok, worker), adapter=adapter
        )
        worker.submit(gen)
        return gen

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per loaded model: tokens, steps, finishes, cancellations, adapter
        loads; and two gauges, `waiting` and `running` (generations queued, sequences
        decoding)."""
        with self._lock:
            workers = [*self._bases.values(), *(w for w, _ in self._full.values())]
        return {w.name: w.snapshot() for w in workers}

    def close(self) -> None:
        with self._lock:
            for worker in [*self._bases.values(), *(w for w, _ in self._full.values())]:
                worker.close()
            self._bases.clear()
            self._full.clear()


def adapter_ref(target: Target) -> AdapterRef:
    """A LoRA fine-tune's adapter; its files are checked here, before anything is queued,
    so even a streaming request gets a clean 400."""
    if target.path is None or not (target.path / "adapter_config.json").exists():
        raise ModelUnavailable(
            f"The adapter files of model '{target.id}' are missing; delete it and fine-tune again.",
            param="model",
        )
    return AdapterRef(key=_adapter_key(target.path), path=target.path)


def stop_token_ids(tokenizer: Any, worker: Worker) -> frozenset[int]:
    """End-of-sequence ids from the tokenizer and the model's generation config."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    config = getattr(worker.forward.adapters.model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(eos)
    return frozenset(ids)


def context_length(target: Target, worker: Worker) -> int:
    if target.base.context_length:
        return target.base.context_length
    config = worker.forward.config
    return int(getattr(config, "max_position_embeddings", 2048))
