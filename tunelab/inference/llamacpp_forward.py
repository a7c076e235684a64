"""A `Forward` on llama.cpp: a GGUF model, one context, every running sequence in it.

The generation worker (tunelab.inference.worker) schedules, samples and streams
exactly as for transformers; this class only computes. Each running row is a
llama.cpp sequence id in one context whose key/value cache all sequences share
(`n_ctx` cells): a prompt is decoded once into a fresh sequence and its further
choices are added with `llama_kv_cache_seq_cp`, which shares the prompt's cells
instead of copying them. A decode step is one `llama_decode` over one token of
every row, and the logits of all rows come back in one array.

tunelab's own token ids are what llama.cpp reads (no text round trip, no
tokenizer of llama.cpp's), so `usage.prompt_tokens` is what the model read, and
its logits go through tunelab's sampler: seeds, logit_bias, penalties, logprobs
and grammars (structured outputs, tools) work as on transformers.

**LoRA fine-tunes** run on the same context: each adapter is converted once to
llama.cpp's GGUF adapter format (tunelab.models.gguf_lora) and loaded beside the
base weights (`llama_lora_adapter_init`), at most `adapter_capacity` at a time
(least recently used first out, never one with running rows). An adapter applies
to a whole `llama_decode`, so a step decodes the rows of each adapter (and of the
base) as a batch of their own, the adapter set for it.

The cache holds `cache_tokens` cells in all, allocated when the model loads. A
step that finds no free cell fails the running requests with a 503 to retry
(Overloaded); `TUNELAB_LLAMACPP_CACHE_TOKENS` sizes it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.errors import ModelUnavailable, Overloaded, TunelabError
from tunelab.inference import llamacpp_capi
from tunelab.inference.handle import AdapterRef, Generation

log = logging.getLogger(__name__)

BATCH_TOKENS = 512  # tokens per llama_decode call: prompts are read in chunks of this


@dataclass(frozen=True)
class _Prompt:
    seq: int  # the sequence id the prompt was decoded into
    length: int


@dataclass
class _Row:
    seq: int
    pos: int  # where its next token goes


class LlamaCppForward:
    """One GGUF model on llama.cpp with up to `max_rows` sequences at once."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int,
        cache_tokens: int,
        threads: int,
        cache_dir: Path,
        adapter_capacity: int = 1,
    ) -> None:
        self._path, self._cache_dir = path, cache_dir
        self._lib = lib = llamacpp_capi.load()
        self._model = lib.llama_load_model_from_file(
            str(path).encode(), lib.llama_model_default_params()
        )
        if not self._model:
            raise ModelUnavailable(
                f"llama.cpp (gpt4all 2.8.2) could not load {path}: the file's architecture or "
                'tokenizer may be newer than that build. Remove "engine": "llama.cpp" from its '
                "registry entry to serve it with transformers."
            )
        params = lib.llama_context_default_params()
        params.n_ctx = cache_tokens
        params.n_batch = params.n_ubatch = max(BATCH_TOKENS, max_rows)
        params.n_seq_max = max_rows
        params.n_threads = params.n_threads_batch = threads
        self._ctx = lib.llama_new_context_with_model(self._model, params)
        if not self._ctx:
            lib.llama_free_model(self._model)
            raise ModelUnavailable(f"llama.cpp could not make a context of {cache_tokens} tokens")
        self.vocab = int(lib.llama_n_vocab(self._model))
        self.cache_tokens = int(lib.llama_n_ctx(self._ctx))
        self._capacity = int(params.n_batch)
        self._batch = lib.llama_batch_init(self._capacity, 0, 1)
        self._free = list(range(max_rows))
        self._rows: list[_Row] = []
        self._adapters: OrderedDict[str, int] = OrderedDict()  # key -> llama.cpp adapter
        self._adapter_capacity = max(1, adapter_capacity)
        self._applied: str | None = None  # the adapter set on the context now
        self._stats = {"decode_calls": 0, "adapter_loads": 0}

    # -- the Forward seam ------------------------------------------------------------

    def attach(self, adapter: AdapterRef, in_use: set[str]) -> None:
        """Load `adapter` (converted once) unless loaded; evict the least recently used."""
        if adapter.key in self._adapters:
            self._adapters.move_to_end(adapter.key)
            return
        from tunelab.models.gguf_lora import gguf_lora

        converted = gguf_lora(adapter.path, self._path, self._cache_dir)
        handle = self._lib.llama_lora_adapter_init(self._model, str(converted).encode())
        if not handle:
            raise ModelUnavailable(f"llama.cpp could not load the adapter {converted}")
        self._adapters[adapter.key] = handle
        self._stats["adapter_loads"] += 1
        for key in [k for k in self._adapters if k not in in_use and k != adapter.key]:
            if len(self._adapters) <= self._adapter_capacity:
                break
            self._use(None if self._applied == key else self._applied)
            self._lib.llama_lora_adapter_free(self._adapters.pop(key))

    def prefill(self, gens: list[Generation]) -> tuple[torch.Tensor, list[object]]:
        """Each prompt into a fresh sequence, BATCH_TOKENS tokens per decode call; the
        logits after each prompt's last token."""
        if len(gens) > len(self._free):
            raise Overloaded("llama.cpp has no free sequence for this request", retry_after=1)
        prompts = [_Prompt(self._free.pop(0), len(g.prompt_ids)) for g in gens]
        logits = torch.empty(len(gens), self.vocab)
        try:
            for key, rows in _by_adapter([g.adapter.key if g.adapter else None for g in gens]):
                self._use(key)
                pending: list[tuple[int, int, int, int]] = []  # token, pos, seq, out row/-1
                for row in rows:
                    p = prompts[row]
                    for pos, token in enumerate(gens[row].prompt_ids):
                        pending.append((token, pos, p.seq, row if pos == p.length - 1 else -1))
                for start in range(0, len(pending), self._capacity):
                    chunk = pending[start : start + self._capacity]
                    self._decode(chunk)
                    for i, (_, _, _, row) in enumerate(chunk):
                        if row >= 0:
                            logits[row] = self._row_logits(i)
        except BaseException:
            for p in prompts:
                self._release(p.seq)
            raise
        return logits, list(prompts)

    def add(self, prompt: object, copies: int) -> None:
        assert isinstance(prompt, _Prompt)  # made by prefill above
        if copies == 0:
            self._release(prompt.seq)
            return
        if copies - 1 > len(self._free):
            self._release(prompt.seq)
            raise Overloaded("llama.cpp has no free sequence for this request", retry_after=1)
        self._rows.append(_Row(prompt.seq, prompt.length))
        for _ in range(copies - 1):  # the other choices share the prompt's cells
            seq = self._free.pop(0)
            self._lib.llama_kv_cache_seq_cp(self._ctx, prompt.seq, seq, -1, -1)
            self._rows.append(_Row(seq, prompt.length))

    def step(self, tokens: list[int], adapters: list[str | None]) -> torch.Tensor:
        groups = _by_adapter(adapters)
        logits = torch.empty(len(tokens), self.vocab) if len(groups) > 1 else None
        for key, rows in groups:
            self._use(key)
            self._decode([(tokens[i], self._rows[i].pos, self._rows[i].seq, i) for i in rows])
            out = np.ctypeslib.as_array(
                self._lib.llama_get_logits(self._ctx), shape=(len(rows), self.vocab)
            )
            if logits is None:  # one group: every row, in order
                logits = torch.from_numpy(out.copy())  # llama.cpp reuses the buffer
            else:
                logits[rows] = torch.from_numpy(out)
        for r in self._rows:
            r.pos += 1
        assert logits is not None
        return logits

    def keep(self, rows: list[int]) -> None:
        kept = set(rows)
        for i, r in enumerate(self._rows):
            if i not in kept:
                self._release(r.seq)
        self._rows = [self._rows[i] for i in rows]

    def reset(self) -> None:
        self._lib.llama_kv_cache_clear(self._ctx)
        self._free = sorted(self._free + [r.seq for r in self._rows])
        self._rows = []

    def counters(self) -> dict[str, int]:
        return dict(self._stats)

    def close(self) -> None:
        self._use(None)
        for handle in self._adapters.values():
            self._lib.llama_lora_adapter_free(handle)
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self._ctx)
        self._lib.llama_free_model(self._model)

    # -- llama.cpp -------------------------------------------------------------------

    def _decode(self, items: list[tuple[int, int, int, int]]) -> None:
        """One llama_decode of (token, position, sequence, output?) items."""
        b = self._batch
        b.n_tokens = len(items)
        for i, (token, pos, seq, out) in enumerate(items):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = out >= 0
        rc = self._lib.llama_decode(self._ctx, b)
        self._stats["decode_calls"] += 1
        if rc == 1:
            raise Overloaded(
                f"llama.cpp's cache of {self.cache_tokens} tokens is full; retry shortly "
                "(TUNELAB_LLAMACPP_CACHE_TOKENS sizes it)",
                retry_after=5,
            )
        if rc != 0:
            raise TunelabError(f"llama.cpp failed to decode (llama_decode returned {rc})")

    def _use(self, key: str | None) -> None:
        """Set the context's adapter to `key`'s (None: the base weights alone)."""
        if key == self._applied:
            return
        if self._applied is not None and self._applied in self._adapters:
            self._lib.llama_lora_adapter_remove(self._ctx, self._adapters[self._applied])
        self._applied = None
        if key is not None:
            if self._lib.llama_lora_adapter_set(self._ctx, self._adapters[key], 1.0) != 0:
                raise TunelabError("llama.cpp could not apply a LoRA adapter")
            self._applied = key

    def _row_logits(self, index: int) -> torch.Tensor:
        ptr = self._lib.llama_get_logits_ith(self._ctx, index)
        return torch.from_numpy(np.ctypeslib.as_array(ptr, shape=(self.vocab,)).copy())

    def _release(self, seq: int) -> None:
        self._lib.llama_kv_cache_seq_rm(self._ctx, seq, -1, -1)
        self._free.append(seq)


def _by_adapter(keys: list[str | None]) -> list[tuple[str | None, list[int]]]:
    """Row indices grouped by adapter, groups in order of first appearance."""
    groups: dict[str | None, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.items())
