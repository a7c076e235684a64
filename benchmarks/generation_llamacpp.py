"""The llama.cpp half of benchmarks/generation.py: llama.cpp direct vs tunelab serving it.

For each weight type (--llamacpp-weights; "file" is the GGUF SmolLM2 ships, Q4_1):

- direct: llama.cpp's C API driven in this process (the library tunelab uses,
  gpt4all 2.8.2's build), greedy, end of turn masked: one prompt at a time for
  "1 stream", and all 8 prompts as 8 sequences of one batched `llama_decode` for
  "8 streams" (llama.cpp's own batched decoding; the best form of the baseline);
- tunelab: a real server whose registry runs SmolLM2 on llama.cpp with those
  weights, through the SDK (streaming, logit_bias banning the end of turn), 1
  stream and 8 concurrent streams. The difference is what tunelab's serving layer
  costs: HTTP, SSE, the SDK, scheduling, sampling, detokenizing. Then the same for
  a LoRA fine-tune of it (generation.py's random adapter, run by llama.cpp as a
  converted adapter), against the base on the same server.

Run alone: .venv/bin/python benchmarks/generation.py --llamacpp-only
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.generation_serving import FT, serving, tunelab_run
from tests.support import register_models
from tunelab.inference import llamacpp_capi
from tunelab.inference.llamacpp import weights_file
from tunelab.models.registry import SMOLLM2, Registry
from tunelab.settings import Settings

Rates = tuple[float, float, float]  # tokens/s, tokens per CPU-second, mean TTFT


class Direct:
    """llama.cpp's C API, greedy with the end of turn masked, no serving layer."""

    def __init__(self, path: Path, threads: int, eos: int) -> None:
        self.lib = lib = llamacpp_capi.load()
        self.model = lib.llama_load_model_from_file(
            str(path).encode(), lib.llama_model_default_params()
        )
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 8192, 512, 512, 8
        params.n_threads = params.n_threads_batch = threads
        self.ctx = lib.llama_new_context_with_model(self.model, params)
        self.vocab = lib.llama_n_vocab(self.model)
        self.batch = lib.llama_batch_init(512, 0, 1)
        self.eos = eos

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)
        self.lib.llama_free_model(self.model)

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        b = self.batch
        b.n_tokens = len(items)
        for i, (token, pos, seq, out) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, out
            b.seq_id[i][0] = seq
        assert self.lib.llama_decode(self.ctx, b) == 0

    def _argmax(self, rows: int) -> list[int]:
        out = np.ctypeslib.as_array(self.lib.llama_get_logits(self.ctx), shape=(rows, self.vocab))
        out[:, self.eos] = -np.inf
        return [int(i) for i in out.argmax(axis=1)]

    def generate(self, prompts: list[list[int]], tokens: int) -> float:
        """`tokens` tokens for each prompt, all prompts as one batch; seconds taken."""
        t = time.perf_counter()
        self.lib.llama_kv_cache_clear(self.ctx)
        self._decode(
            [(t, i, s, i == len(p) - 1) for s, p in enumerate(prompts) for i, t in enumerate(p)]
        )
        last = self._argmax(len(prompts))
        for step in range(tokens - 1):
            self._decode([(last[s], len(p) + step, s, True) for s, p in enumerate(prompts)])
            last = self._argmax(len(prompts))
        return time.perf_counter() - t

    def run(self, prompts: list[list[int]], tokens: int, batch: bool) -> Rates:
        groups = [prompts] if batch else [[p] for p in prompts]
        self.generate(groups[0], 2)  # warm up
        cpu = time.process_time()
        wall = sum(self.generate(g, tokens) for g in groups)
        cpu = time.process_time() - cpu
        ttft = statistics.mean(self.generate(g, 1) for g in groups)
        n = len(prompts) * tokens
        return n / wall, n / cpu, ttft


def served(
    weights: str, cache: Path, single: list[str], eight: list[str], tokens: int, threads: int,
    adapter: Path,
) -> tuple[Rates, Rates, Rates, Rates]:  # fmt: skip
    """tunelab serving SmolLM2 on llama.cpp with `weights`: 1 stream, 8 streams; the
    same for a LoRA fine-tune of it."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            cache_dir=cache,
            embedded_worker=False,
            llamacpp_threads=threads,
        )
        entry = {"id": SMOLLM2, "engine": "llama.cpp", "llamacpp_weights": weights}
        register_models(settings, [entry])
        with serving(settings, adapter) as client:
            rows = [
                tunelab_run(client, model, prompts, tokens, concurrent)
                for model in (SMOLLM2, FT)
                for prompts, concurrent in ((single, False), (eight, True))
            ]
            return rows[0], rows[1], rows[2], rows[3]


def llamacpp_rows(
    tok: Any,
    cache: Path,
    single: list[str],
    eight: list[str],
    tokens: int,
    weights: list[str],
    threads: int,
    plain: tuple[Rates, Rates] | None,
    adapter: Path,
) -> dict[str, tuple[Rates, Rates, Rates, Rates]]:
    """Measure and print llama.cpp direct and served per weight type; tunelab's rows."""

    def ids(prompts: list[str]) -> list[list[int]]:
        chats = [[{"role": "user", "content": p}] for p in prompts]
        return [
            list(tok.apply_chat_template(c, add_generation_prompt=True)["input_ids"]) for c in chats
        ]

    ours: dict[str, tuple[Rates, Rates, Rates, Rates]] = {}
    print(
        f"\nllama.cpp (gpt4all 2.8.2's build), {threads} threads, greedy, {tokens} tokens per "
        "stream, end of turn banned; direct = its C API in-process (8 streams: one batched "
        "llama_decode over 8 sequences)"
    )
    head = f"{'weights':8} {'run':9} {'direct tok/s':>12} {'TTFT':>6}   {'tunelab tok/s':>13}"
    print(f"{head} {'tok/CPU-s':>9} {'TTFT':>6}   {'vs direct':>9} {'TTFT':>6} {'vs plain':>8}")
    for w in weights:
        spec = replace(Registry.load().get(SMOLLM2), engine="llama.cpp", llamacpp_weights=w)
        path = weights_file(spec, cache)
        direct = Direct(path, threads, tok.eos_token_id)
        d1, d8 = direct.run(ids(single), tokens, False), direct.run(ids(eight), tokens, True)
        direct.close()
        ours[w] = t1, t8, a1, a8 = served(w, cache, single, eight, tokens, threads, adapter)
        size = f"{w} {path.stat().st_size / 1e6:.0f}MB"
        for name, d, t, p in [("1 stream", d1, t1, 0), ("8 streams", d8, t8, 1)]:
            vs_plain = f"{t[0] / plain[p][0]:7.2f}x" if plain else "       -"
            print(
                f"{size if p == 0 else '':8} {name:9} {d[0]:12.1f} {d[2]:5.2f}s   {t[0]:13.1f} "
                f"{t[1]:9.1f} {t[2]:5.2f}s   {t[0] / d[0]:8.2f}x {t[2] / d[2]:5.2f}x {vs_plain}"
            )
        for name, a in [("1 stream", a1), ("8 streams", a8)]:
            print(f"{'LoRA':8} {name:9} {'':12} {'':6}   {a[0]:13.1f} {a[1]:9.1f} {a[2]:5.2f}s")
    return ours


def llamacpp_targets(
    ours: dict[str, tuple[Rates, Rates, Rates, Rates]], plain: tuple[Rates, Rates]
) -> None:
    """The issue's ratios for the llama.cpp engine, per weight type."""
    (p1, _, p_ttft), _ = plain
    print("\nthe issue's targets, tunelab on llama.cpp (same run):")
    for w, ((t1, _, ttft), (t8, _, _), (a1, _, _), (a8, _, _)) in ours.items():
        print(
            f"  {w:5} 1 stream vs plain generate {t1 / p1:5.2f}x (>= 1.0), TTFT vs plain "
            f"{ttft / p_ttft:5.2f}x (<= 1.0), 8 streams vs 1 stream {t8 / t1:5.2f}x (>= 4), "
            f"LoRA vs base {a1 / t1:4.2f}x / {a8 / t8:4.2f}x (>= 0.9)"
        )
