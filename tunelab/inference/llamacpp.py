"""A chat engine that runs GGUF registry models on llama.cpp, and routes what it can not.

A registry entry with `"engine": "llama.cpp"` (and a local `gguf_file`) is run by
llama.cpp on its GGUF file: on a CPU several times faster than transformers on
the dequantised model (benchmarks/generation.py). llama.cpp comes prebuilt in
gpt4all's wheel (gpt4all==2.8.2; PyPI has no wheel of llama-cpp-python), driven
through that wheel's C API (`llmodel_prompt`), pinned with it.

**What runs where.** A request for such a model runs on llama.cpp when llama.cpp
can do exactly what it asks: the base model itself (not a fine-tune), with
`temperature`, `top_p`, `max_tokens`, `stop`, `n` and streaming. Everything else
goes to the in-process transformers engine for the same model, so every feature
keeps working and no parameter is silently dropped (`transformers_only` says why):

- LoRA and full fine-tunes of the base (their weights are not in the GGUF file);
- a grammar: `response_format` json_object / json_schema, `tools`, `functions`;
- `logit_bias`, `logprobs` / `top_logprobs`, `presence_penalty` /
  `frequency_penalty` (the binding exposes none of them), and `seed` (llama.cpp's
  sampler draws from one generator per loaded copy that a request can not seed);
- `top_p` below 1 with a temperature other than 0 or 1: llama.cpp cuts the nucleus
  before applying the temperature, OpenAI after.

Output differs from the transformers engine's only as the model's numerics do:
llama.cpp computes with the quantised weights the file holds.

**The prompt is the one tunelab counted.** The seam hands token ids; they are
decoded to text with special tokens kept, and llama.cpp tokenizes that text with
special tokens parsed and no template of its own (`%1%2`). Every prompt token it
decodes is compared with tunelab's ids; on any difference the generation stops
before its first token and the request runs on transformers instead (counted as
`prompt_fallbacks`), so `usage.prompt_tokens` is always what the model read.

**Generation.** Each token llama.cpp samples comes back through a callback with
its id: tunelab detokenizes it (the same incremental detokenizer and stop-string
matcher as its own engine), sends text deltas, ends the choice on a stop string,
an end-of-turn token or `max_tokens` (finish_reason stop / length), and stops
llama.cpp by returning False, also when the client has gone away.
`completion_tokens` counts the end-of-turn token, as the transformers engine does.
A limit of that build: it also ends a reply where the text "### Instruction",
"### Prompt", "### Response", "### Human", "### Assistant" or "### Context"
begins, a rule written into gpt4all's generation loop; such a reply ends with
finish_reason "stop" before that text.

**Concurrency.** A llama.cpp context serves one generation at a time, so each
model gets `settings.llamacpp_instances` copies (the weights are mmapped and
shared; each copy has its own KV cache), each owned by one thread with
`llamacpp_threads` CPU threads. Requests wait in one queue of at most
`max_queued_requests`; past that, Overloaded (503 + Retry-After), as in-process.
"""

from __future__ import annotations

import logging
import os
import threading

from tunelab.inference.handle import Generation, SamplingParams
from tunelab.inference.llamacpp_runner import LlamaCppModel, load_copy
from tunelab.inference.protocol import ChatEngine, Target, Tokenizer
from tunelab.models.registry import ModelSpec
from tunelab.settings import Settings

log = logging.getLogger(__name__)

LLAMA_CPP = "llama.cpp"


def transformers_only(target: Target, params: SamplingParams) -> str | None:
    """Why llama.cpp can not run this request exactly (it then runs on transformers),
    or None when it can."""
    if target.kind != "base":
        return "a fine-tune"
    if params.grammar is not None:
        return "structured outputs or tools"
    if params.logit_bias:
        return "logit_bias"
    if params.logprobs:
        return "logprobs"
    if params.presence_penalty or params.frequency_penalty:
        return "presence or frequency penalty"
    if params.seed is not None:
        return "seed"
    if params.top_p < 1 and params.temperature not in (0, 1):
        return "top_p with a temperature other than 0 or 1"
    return None


class LlamaCppEngine:
    """Runs models registered with engine "llama.cpp" on it; everything else on `local`."""

    def __init__(self, local: ChatEngine, settings: Settings) -> None:
        self.local = local
        self._settings = settings
        self._lock = threading.Lock()
        self._models: dict[str, LlamaCppModel] = {}
        self._tokenizers: dict[str, Tokenizer] = {}
        self._contexts: dict[str, int] = {}

    # -- the ChatEngine seam ---------------------------------------------------------

    def tokenizer(self, target: Target) -> Tokenizer:
        if not _runs_here(target):
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
        if not _runs_here(target):
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
        if not _runs_here(target):
            return self.local.submit(target, prompt_ids, params)
        model = self._model(target)
        reason = transformers_only(target, params)
        if reason is not None:
            model.count("routed_to_transformers")
            log.debug("%s: %s runs on transformers (%s)", target.base.id, target.id, reason)
            return self.local.submit(target, prompt_ids, params)
        gen = Generation(prompt_ids, params, stop_token_ids=model.stop_token_ids)
        model.submit(gen, lambda: self.local.submit(target, prompt_ids, params))
        return gen

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            models = list(self._models.values())
        return {**self.local.stats(), **{m.name: m.snapshot() for m in models}}

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
        self.local.close()

    # -- loading -----------------------------------------------------------------------

    def _model(self, target: Target) -> LlamaCppModel:
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

    def _load(self, base: ModelSpec, tok: Tokenizer, n_ctx: int) -> LlamaCppModel:
        from tunelab.models.llamacpp_gguf import llamacpp_gguf

        s = self._settings
        path = llamacpp_gguf(base, s.model_cache_dir)
        instances = s.llamacpp_instances
        threads = s.llamacpp_threads or max(1, _cores() // instances)
        copies = [load_copy(base, path, n_ctx, threads) for _ in range(instances)]
        log.info("loaded %s on llama.cpp: %d x %d threads", base.id, instances, threads)
        return LlamaCppModel(
            f"{base.id}@{LLAMA_CPP}",
            copies,
            tok,
            # llama.cpp ends a reply at the file's end token itself; the tokenizer's too:
            frozenset({tok.eos_token_id} if tok.eos_token_id is not None else ()),
            max_queued=s.max_queued_requests,
        )


def _runs_here(target: Target) -> bool:
    """The base model of an entry with engine "llama.cpp" (its fine-tunes are not in the
    GGUF file: they, their tokenizers and their windows are the local engine's)."""
    return target.base.engine == LLAMA_CPP and target.kind == "base"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
