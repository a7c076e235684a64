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

**Fine-tunes.** A LoRA fine-tune of the base runs on llama.cpp too: its adapter
is converted once to llama.cpp's GGUF adapter format and applied at run time
(tunelab.models.gguf_lora, LlamaCppForward). An adapter that format can not
express (see gguf_lora) and full fine-tunes (their own weights) run on the
in-process transformers engine, which loads on the first such request;
`routed_to_transformers` counts those requests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from pathlib import Path

from tunelab.inference.engine import adapter_ref
from tunelab.inference.handle import AdapterRef, Generation, SamplingParams
from tunelab.inference.llamacpp_capi import quantize
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
        self._routed: Counter[str] = Counter()  # fine-tune requests sent to transformers
        self._runnable: dict[str, bool] = {}  # adapter key -> llama.cpp can run it

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
        adapter = None
        if target.kind == "lora":
            adapter = adapter_ref(target)
            if not self._convertible(target.base, adapter):
                with self._lock:
                    self._routed[target.base.id] += 1
                return self.local.submit(target, prompt_ids, params)
        gen = Generation(
            prompt_ids, params, stop_token_ids=_stop_token_ids(worker.tokenizer), adapter=adapter
        )
        worker.submit(gen)
        return gen

    def _convertible(self, base: ModelSpec, adapter: AdapterRef) -> bool:
        """Whether llama.cpp can run `adapter`: converted on its first request (the
        worker loads the file then), the answer kept, so a refused adapter is not read
        and refused again at every request."""
        with self._lock:
            known = self._runnable.get(adapter.key)
        if known is not None:
            return known
        from tunelab.models.gguf_lora import AdapterNotConvertible, gguf_lora

        cache = self._settings.model_cache_dir
        try:
            gguf_lora(adapter.path, weights_file(base, cache), cache)
            known = True
        except AdapterNotConvertible as e:
            log.info("%s runs on transformers: %s", adapter.path, e)
            known = False
        with self._lock:
            self._runnable[adapter.key] = known
        return known

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            models = list(self._models.items())
            routed = dict(self._routed)
        return {
            **self.local.stats(),
            **{
                m.name: {**m.snapshot(), "routed_to_transformers": routed.get(base, 0)}
                for base, m in models
            },
        }

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
            model.forward.close()  # after its thread: nothing decodes any more
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
        s = self._settings
        rows = max(s.max_batch_size, MAX_N)  # a request's n choices always fit
        forward = LlamaCppForward(
            weights_file(base, s.model_cache_dir),
            max_rows=rows,
            cache_tokens=max(n_ctx, s.llamacpp_cache_tokens),  # one full window at least
            threads=s.llamacpp_threads or _cores(),
            adapter_capacity=s.adapter_cache_size,
            cache_dir=s.model_cache_dir,
        )
        log.info("loaded %s on llama.cpp: %d cache tokens", base.id, forward.cache_tokens)
        return GenerationWorker(
            forward,
            tok,
            name=f"{base.id}@{LLAMA_CPP}",
            max_batch=s.max_batch_size,
            max_queued=s.max_queued_requests,
        )


def weights_file(base: ModelSpec, cache_dir: Path) -> Path:
    """The GGUF file llama.cpp serves `base` from: its own file (as that build can load
    it, tunelab.models.llamacpp_gguf), or converted once to the entry's
    `llamacpp_weights` into the model cache (temporary name, then renamed: a crash
    leaves no half-written file: tunelab.models.cachefiles)."""
    from tunelab.models.cachefiles import sources_key, written
    from tunelab.models.llamacpp_gguf import llamacpp_gguf

    path = llamacpp_gguf(base, cache_dir)
    if base.llamacpp_weights == "file":
        return path
    name = f"{sources_key(path)}-{path.stem}.{base.llamacpp_weights}.gguf"
    target = cache_dir / "llamacpp" / name
    if not target.exists():
        log.info("converting %s to %s for llama.cpp", path.name, base.llamacpp_weights)
        with written(target) as temp:
            quantize(path, temp, base.llamacpp_weights, _cores())
    return target


def _stop_token_ids(tok: Tokenizer) -> frozenset[int]:
    return frozenset({tok.eos_token_id} if tok.eos_token_id is not None else ())


def runs_on_llamacpp(target: Target) -> bool:
    """The base model of an entry with engine "llama.cpp", and its LoRA fine-tunes (base
    tokenizer and window; submit sends an adapter llama.cpp can not run to transformers).
    A full fine-tune is a model of its own: its weights, tokenizer and window are the
    local engine's."""
    return target.base.engine == LLAMA_CPP and target.kind in ("base", "lora")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
