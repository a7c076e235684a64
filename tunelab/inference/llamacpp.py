"""A chat engine that runs GGUF registry models on llama.cpp, and routes what it can not.

A registry entry with `"engine": "llama.cpp"` (and a local `gguf_file`) is run by
llama.cpp on its GGUF file: on a CPU several times faster than transformers on
the dequantised model (benchmarks/generation.py). llama.cpp comes prebuilt in
gpt4all's wheel (gpt4all==2.8.2; PyPI has no wheel of llama-cpp-python); tunelab
drives its C API (tunelab.inference.llamacpp_capi).

**One scheduler.** Each such model gets a `GenerationWorker` (the transformers
engine's scheduler) over a `LlamaCppForward`: continuous batching (every running
sequence advances in one `llama_decode`), tunelab's prompt token ids fed as they
are, and tunelab's sampler on llama.cpp's logits. So `seed`, `logit_bias`,
penalties, `logprobs`, `n`, `stop` and grammars (structured outputs, tools) behave
as on transformers; the output differs only as the weights the file holds do.

**What runs elsewhere.** Fine-tunes of the base (LoRA or full; their weights are
not in the GGUF file) run on the in-process transformers engine for the same
model, which loads on the first such request.
"""

from __future__ import annotations

import logging
import os
import threading

from tunelab.inference.handle import Generation, SamplingParams
from tunelab.inference.llamacpp_forward import LlamaCppForward
from tunelab.inference.protocol import ChatEngine, Target, Tokenizer
from tunelab.inference.worker import GenerationWorker
from tunelab.limits import MAX_N
from tunelab.models.registry import ModelSpec
from tunelab.settings import Settings

log = logging.getLogger(__name__)

LLAMA_CPP = "llama.cpp"


class LlamaCppEngine:
    """Runs models registered with engine "llama.cpp" on it; everything else on `local`."""

    def __init__(self, local: ChatEngine, settings: Settings) -> None:
        self.local = local
        self._settings = settings
        self._lock = threading.Lock()
        self._models: dict[str, GenerationWorker[LlamaCppForward]] = {}
        self._tokenizers: dict[str, Tokenizer] = {}
        self._contexts: dict[str, int] = {}

    # -- the ChatEngine seam ---------------------------------------------------------

    def tokenizer(self, target: Target) -> Tokenizer:
        if not runs_on_llamacpp(target):
            return self.local.tokenizer(target)
        base = target.base
        with self._lock:
            tok = self._tokenizers.get(base.id)
        if tok is None:  # the tokenizer alone: the transformers model loads only if needed
            from tunelab.models.loading import load_tokenizer

            tok = load_tokenizer(base, self._settings.model_cache_dir)
            with self._lock:
                tok = self._tokenizers.setdefault(base.id, tok)
        return tok

    def context_length(self, target: Target) -> int:
        if not runs_on_llamacpp(target):
            return self.local.context_length(target)
        base = target.base
        if base.context_length:
            return base.context_length
        with self._lock:
            known = self._contexts.get(base.id)
        if known is None:
            from tunelab.models.llamacpp_gguf import gguf_context_length

            assert base.gguf_path is not None  # the registry checks it for this engine
            known = gguf_context_length(base.gguf_path) or 2048
            with self._lock:
                self._contexts[base.id] = known
        return known

    def submit(self, target: Target, prompt_ids: list[int], params: SamplingParams) -> Generation:
        if not runs_on_llamacpp(target):
            return self.local.submit(target, prompt_ids, params)
        worker = self._model(target)
        gen = Generation(prompt_ids, params, stop_token_ids=_stop_token_ids(worker.tokenizer))
        worker.submit(gen)
        return gen

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            models = list(self._models.values())
        return {**self.local.stats(), **{m.name: _counters(m) for m in models}}

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
            model.forward.close()
        self.local.close()

    # -- loading -----------------------------------------------------------------------

    def _model(self, target: Target) -> GenerationWorker[LlamaCppForward]:
        base = target.base
        with self._lock:
            model = self._models.get(base.id)
        if model is not None:
            return model
        tok = self.tokenizer(target)
        n_ctx = self.context_length(target)
        with self._lock:  # one load per model, however many requests arrive at once
            model = self._models.get(base.id)
            if model is None:
                model = self._models[base.id] = self._load(base, tok, n_ctx)
        return model

    def _load(
        self, base: ModelSpec, tok: Tokenizer, n_ctx: int
    ) -> GenerationWorker[LlamaCppForward]:
        from tunelab.models.llamacpp_gguf import llamacpp_gguf

        s = self._settings
        rows = max(s.max_batch_size, MAX_N)  # a request's n choices always fit
        forward = LlamaCppForward(
            llamacpp_gguf(base, s.model_cache_dir),
            max_rows=rows,
            cache_tokens=max(n_ctx, s.llamacpp_cache_tokens),  # one full window at least
            threads=s.llamacpp_threads or _cores(),
        )
        log.info("loaded %s on llama.cpp: %d cache tokens", base.id, forward.cache_tokens)
        return GenerationWorker(
            forward,
            tok,
            name=f"{base.id}@{LLAMA_CPP}",
            max_batch=s.max_batch_size,
            max_queued=s.max_queued_requests,
        )


def _stop_token_ids(tok: Tokenizer) -> frozenset[int]:
    return frozenset({tok.eos_token_id} if tok.eos_token_id is not None else ())


def _counters(worker: GenerationWorker[LlamaCppForward]) -> dict[str, int]:
    waiting, running = worker.depth
    return {**worker.stats, **worker.forward.counters(), "waiting": waiting, "running": running}


def runs_on_llamacpp(target: Target) -> bool:
    """The base model of an entry with engine "llama.cpp" (its fine-tunes are not in the
    GGUF file: they, their tokenizers and their windows are the local engine's)."""
    return target.base.engine == LLAMA_CPP and target.kind == "base"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
