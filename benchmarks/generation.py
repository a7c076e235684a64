"""Generation speed: tunelab's /v1/chat/completions vs plain transformers `generate`.

Same prompts, same model, same run. A real tunelab server runs in this process
(real HTTP; the official openai SDK streams from a process of its own); the
baseline is what a user would otherwise write: `model.generate` with a KV cache,
one prompt at a time for "1 stream", and one left-padded batch of all prompts for
"8 streams".
For the adapter rows a random LoRA adapter is served as an `ft:` model, and the
baseline is the peft-wrapped model's `generate`; for the mixed row, 4 base and 4
adapter requests at once, and one peft batch with `adapter_names` as the baseline.

Also in the same run: the memory-bandwidth limit (decoding one token reads every
weight once, so tokens/s can not exceed bandwidth / weight bytes), and llama.cpp
(benchmarks/generation_llamacpp.py): llama.cpp driven directly, one stream and
8 sequences batched, against tunelab serving SmolLM2 on its llama.cpp engine
(registry "engine": "llama.cpp"), for each --llamacpp-weights type (the GGUF
file's own Q4_1, and conversions of it).

Both sides run torch on a non-main thread (see Plain.run). Every run generates
exactly --tokens tokens per prompt (end-of-turn is banned), so tokens/s compare
like for like. TTFT = time to the first streamed token
(baseline: a generate call with max_new_tokens=1). Also printed: FLOP/s achieved
(2 x parameters per token) against this machine's fp32 matmul peak, and tokens
per CPU-second of the whole process: on a shared, busy machine wall-clock rates
swing wildly, CPU time much less.

    .venv/bin/python benchmarks/generation.py [--tokens 32] [--dtype float32|bfloat16]
        [--rounds 5] [--no-llamacpp | --llamacpp-only] [--llamacpp-weights file,q8_0,f32]

The transformers rows run --rounds rounds, each plain then tunelab for every row, and
report medians: the speed of a shared VM drifts over minutes, and a run that measured
all of plain first and all of tunelab later compared two different machines. Each of
the issue's targets is a ratio of two measurements of the same round (tunelab against
plain for one row, or two tunelab rows), printed as the median over rounds and the
range, so one slow minute moves one round's ratio and not the verdict.

(--dtype defaults to what the server picks here: bf16 on CPUs with native bf16.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.generation_llamacpp import llamacpp_rows, llamacpp_targets
from benchmarks.generation_serving import FT, serving, tunelab_run
from tunelab.hardware import cpu_has_native_bf16
from tunelab.models.loading import load_causal_lm, load_tokenizer
from tunelab.models.registry import SMOLLM2, Registry
from tunelab.settings import Settings

PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain photosynthesis to a child.",
    "Give me three tips for learning Python.",
    "What causes the seasons on Earth?",
    "Describe a cat in two sentences.",
    "How do I reset a Wi-Fi router?",
    "Why is the sky blue?",
]


def matmul_peak() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    return 2 * 1024**3 * reps / (time.perf_counter() - t)


def memory_bandwidth() -> float:
    """Bytes per second of a large copy (read + write), the best of a few."""
    src = torch.empty(64 * 2**20, dtype=torch.float32).fill_(1.0)  # 256 MiB
    dst = torch.empty_like(src)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        best = max(best, 2 * src.numel() * 4 / (time.perf_counter() - t))
    return best


def make_adapter(model: Any, target: Path) -> Any:
    """A random (non-zero) LoRA on attention and MLP projections, saved like a fine-tune's."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(
        r=16,
        lora_alpha=32,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "up_proj",
            "down_proj",
            "gate_proj",
        ],
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config).eval()
    peft_model.save_pretrained(str(target))
    return peft_model


Rates = tuple[float, float, float]  # tokens/s, tokens per CPU-second, TTFT
MIXED = "mixed, 8 streams"  # 4 base and 4 adapter requests at once


def median(rows: list[Rates]) -> Rates:
    """Each column's median over rounds."""
    a, b, c = (statistics.median(col) for col in zip(*rows, strict=True))
    return a, b, c


class Plain:
    """The baseline: transformers generate, greedy, KV cache, end-of-turn suppressed."""

    def __init__(self, model: Any, tok: Any, tokens: int) -> None:
        self.model, self.tok, self.tokens = model, tok, tokens
        tok.padding_side = "left"
        # One long-lived thread, like tunelab's worker: a fresh thread per run was up to
        # 8% slower here (torch's OpenMP team is built per calling thread).
        self._thread = ThreadPoolExecutor(1)

    def _inputs(self, prompts: list[str]) -> Any:
        texts = [
            self.tok.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
        return self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    def _generate(self, prompts: list[str], n: int, extra: dict[str, Any]) -> float:
        inputs = self._inputs(prompts)
        t = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(
                **inputs,
                **extra,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        return time.perf_counter() - t

    def run(
        self, prompts: list[str], batch: bool, adapters: list[str] | None = None
    ) -> tuple[float, float, float]:
        """(tokens/s, tokens per CPU-second, mean TTFT) over all prompts, measured on
        a thread of its own like tunelab's generation worker: torch's OpenMP team
        behaves differently on the main thread of a busy machine, and both sides
        must get the same. `adapters`: each prompt's peft adapter in one batch
        (peft's mixed-batch `adapter_names`)."""
        groups = [prompts] if batch else [[p] for p in prompts]
        extra: dict[str, Any] = {"adapter_names": adapters} if adapters else {}

        def measure() -> tuple[float, float, float]:
            cpu = time.process_time()
            total = sum(self._generate(g, self.tokens, extra) for g in groups)
            cpu = time.process_time() - cpu
            ttft = statistics.mean(self._generate(g, 1, extra) for g in groups)
            n = len(prompts) * self.tokens
            return n / total, n / cpu, ttft

        return self._thread.submit(measure).result()


def paired(num: list[float], den: list[float]) -> str:
    """A ratio measured once per round: its median and its range over the rounds."""
    r = [n / d for n, d in zip(num, den, strict=True)]
    return f"{statistics.median(r):5.2f}x ({min(r):.2f}-{max(r):.2f})"


def targets(rounds: dict[str, list[tuple[Rates, Rates]]]) -> list[tuple[str, str, str]]:
    """The issue's ratios, each from two measurements of one round, taken within a
    minute of each other: a VM whose speed drifts over minutes then skews the round
    it drifted in, where a ratio of per-row medians could compare rows measured
    minutes apart."""

    def col(name: str, side: int, i: int) -> list[float]:  # side 0 plain, 1 tunelab
        return [pair[side][i] for pair in rounds[name]]

    b1, b8 = col("base, 1 stream", 1, 0), col("base, 8 streams", 1, 0)
    return [
        ("1 stream vs plain generate", ">= 1.0", paired(b1, col("base, 1 stream", 0, 0))),
        (
            "time to first token vs plain",
            "<= 1.0",
            paired(col("base, 1 stream", 1, 2), col("base, 1 stream", 0, 2)),
        ),
        ("8 streams vs 1 stream, tunelab", ">= 4", paired(b8, b1)),
        ("adapter vs base, 1 stream", ">= 0.9", paired(col("adapter, 1 stream", 1, 0), b1)),
        ("adapter vs base, 8 streams", ">= 0.9", paired(col("adapter, 8 streams", 1, 0), b8)),
        ("4 adapter + 4 base vs 8 base", "", paired(col(MIXED, 1, 0), b8)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument(
        "--single", type=int, default=2, help="prompts run one after another for '1 stream'"
    )
    # the server's own default (inference_dtype "auto"): bf16 only where the CPU computes it
    auto = "bfloat16" if cpu_has_native_bf16() else "float32"
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default=auto)
    ap.add_argument(
        "--llamacpp-only",
        action="store_true",
        help="only llama.cpp direct and tunelab's llama.cpp engine (no transformers rows)",
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians)")
    ap.add_argument(
        "--no-llamacpp",
        action="store_true",
        help="only plain generate and tunelab's transformers engine (no llama.cpp rows)",
    )
    ap.add_argument(
        "--llamacpp-weights",
        default="file,q8_0,f32",
        help="weight types llama.cpp serves the GGUF as (registry llamacpp_weights)",
    )
    args = ap.parse_args()
    weights = args.llamacpp_weights.split(",")
    threads = torch.get_num_threads()
    cache = Settings().model_cache_dir
    spec = Registry.load().get(SMOLLM2)
    dtype = getattr(torch, args.dtype)
    single, eight = PROMPTS[: args.single], PROMPTS[:8]
    if args.llamacpp_only:
        tok = load_tokenizer(spec, cache)
        with tempfile.TemporaryDirectory() as tmp:
            adapter_dir = Path(tmp) / "adapter"
            make_adapter(load_causal_lm(spec, cache), adapter_dir)
            llamacpp_rows(
                tok, cache, single, eight, args.tokens, weights, threads, None,
                adapter_dir,
            )  # fmt: skip
        return

    results: list[tuple[str, Rates, Rates]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            cache_dir=cache,
            embedded_worker=False,
            inference_dtype=args.dtype,
        )
        tok = load_tokenizer(spec, cache)
        model = load_causal_lm(spec, cache, dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        adapter_dir = settings.models_dir / "bench-adapter"
        peft_model = make_adapter(load_causal_lm(spec, cache, dtype=dtype), adapter_dir)
        plain = {SMOLLM2: Plain(model, tok, args.tokens), FT: Plain(peft_model, tok, args.tokens)}
        plain[SMOLLM2].run(single[:1], batch=False)  # warm up
        plain[FT].run(single[:1], batch=False)
        runs: list[tuple[str, str | list[str], list[str], bool]] = [
            (f"{label}, {name}", model_id, prompts, conc)
            for label, model_id in (("base", SMOLLM2), ("adapter", FT))
            for name, prompts, conc in (("1 stream", single, False), ("8 streams", eight, True))
        ]
        # 4 base and 4 adapter requests at once; plain: one peft batch, adapter_names
        runs.append((MIXED, [SMOLLM2, FT] * 4, eight, True))
        rounds: dict[str, list[tuple[Rates, Rates]]] = {name: [] for name, *_ in runs}
        with serving(settings, adapter_dir) as client:
            # Rounds interleave plain and tunelab, so a machine whose speed drifts over
            # minutes (a shared VM) slows both sides alike; medians are reported.
            for _ in range(args.rounds):
                for name, model_id, prompts, conc in runs:
                    if isinstance(model_id, list):
                        names = ["default" if m == FT else "__base__" for m in model_id]
                        baseline = plain[FT].run(prompts, batch=conc, adapters=names)
                    else:
                        baseline = plain[model_id].run(prompts, batch=conc)
                    served = tunelab_run(client, model_id, prompts, args.tokens, conc)
                    rounds[name].append((baseline, served))
        results = [
            (name, median([p for p, _ in rs]), median([t for _, t in rs]))
            for name, rs in rounds.items()
        ]
        del model, peft_model, plain

        plain_rows = (results[0][1], results[1][1])  # base, 1 and 8 streams
        ours = None if args.no_llamacpp else llamacpp_rows(
            tok, cache, single, eight, args.tokens, weights, threads, plain_rows,
            adapter_dir,
        )  # fmt: skip

    peak = matmul_peak()
    bandwidth = memory_bandwidth()
    weight_bytes = params * torch.finfo(dtype).bits // 8
    print(
        f"\nSmolLM2-135M ({params / 1e6:.0f}M params, {args.dtype}), "
        f"{args.tokens} tokens per stream, greedy"
    )
    print(f"fp32 matmul peak on this machine: {peak / 1e9:.0f} GFLOP/s\n")
    print(
        f"{'run':18} {'plain tok/s':>11} {'tok/CPU-s':>9} {'TTFT':>6}   "
        f"{'tunelab tok/s':>13} {'tok/CPU-s':>9} {'TTFT':>6} {'%peak':>5}   "
        f"{'ratio':>6} {'CPU ratio':>9}"
    )
    for name, (p_tps, p_cps, p_ttft), (tps, cps, ttft) in results:
        print(
            f"{name:18} {p_tps:11.1f} {p_cps:9.1f} {p_ttft:5.2f}s   "
            f"{tps:13.1f} {cps:9.1f} {ttft:5.2f}s {100 * 2 * params * tps / peak:5.1f}   "
            f"{tps / p_tps:5.2f}x {cps / p_cps:8.2f}x"
        )
    row = {name: (plain_res, ours) for name, plain_res, ours in results}
    (_, t1) = row["base, 1 stream"]
    print(f"\nthe issue's targets (same run; the median of {args.rounds} rounds, and the range):")
    for label, target, ratio in targets(rounds):
        print(f"  {label:32} {ratio}  " + (f"(target {target})" if target else "(no target)"))
    print(
        f"\nmemory bandwidth (copy): {bandwidth / 1e9:.1f} GB/s; "
        f"{weight_bytes / 1e6:.0f} MB of {args.dtype} weights per token -> at most "
        f"{bandwidth / weight_bytes:.0f} tok/s for one stream; tunelab: {t1[0]:.1f} "
        f"({100 * t1[0] * weight_bytes / bandwidth:.0f}% of the limit)"
    )
    if ours is not None:
        llamacpp_targets(ours, plain_rows)


if __name__ == "__main__":
    main()
