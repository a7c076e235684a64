"""Where a decode step's time goes: tunelab's generation worker vs plain `generate`,
in one process, no HTTP, interleaved rounds (so a busy, shared machine slows both
alike), reporting the median per-token wall time and CPU time of each.

The worker is driven exactly as the server drives it (a Generation submitted, its
events consumed on another thread); the baseline is `model.generate` with a KV
cache, greedy, the same prompt and the same token count (end-of-turn banned on
both sides). Run it under py-spy to see the worker's step broken down:

    .venv/bin/python benchmarks/decode_step.py [--tokens 64] [--rounds 5] [--dtype float32]
        [--steps]

--steps also times one decode step alone for 1 and 8 rows on the packed model, interleaved:
transformers' forward against tunelab.inference.lean_forward unfused and fused, and fused
with the step's keys and values written in place into the batch's cache (KVBatch.grow, as
the worker runs it) instead of a torch.cat copy of every layer's cache; --context N
makes the cache N tokens long (the prompt repeated; default: the prompt alone).
    .venv/bin/py-spy record -o /tmp/step.svg -- .venv/bin/python benchmarks/decode_step.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tunelab.inference.engine import stop_token_ids
from tunelab.inference.forward import TorchForward
from tunelab.inference.handle import Finished, Generation, SamplingParams
from tunelab.inference.worker import GenerationWorker
from tunelab.models.loading import load_causal_lm, load_tokenizer
from tunelab.models.packed import pack_linears
from tunelab.models.registry import SMOLLM2, Registry
from tunelab.settings import Settings

PROMPT = "Write a short poem about the sea."


def timed(fn: Any) -> tuple[float, float]:
    """(wall, process CPU) seconds of fn() run on a fresh thread, like the worker's
    (process CPU: torch's intra-op threads count too, on both sides)."""
    out: list[tuple[float, float]] = []

    def body() -> None:
        t, c = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - t, time.process_time() - c))

    th = threading.Thread(target=body)
    th.start()
    th.join()
    return out[0]


def step_alone(model: Any, ids: list[int], rows: int, rounds: int) -> dict[str, float]:
    """Median ms of one decode step over a `rows`-row cache of the prompt `ids`."""
    from transformers import DynamicCache

    from tunelab.inference import lean_forward
    from tunelab.inference.kvbatch import KVBatch

    prompt = torch.tensor([ids])
    out = model(input_ids=prompt, use_cache=True)
    kv = KVBatch()  # the worker's batch: each step writes the same next column here
    kv.add([(k, v) for k, v, *_ in out.cache], len(ids), copies=rows)
    mask, pos, data = kv.step_inputs()
    token = out.logits[:, -1:].argmax(-1).expand(rows, 1)
    ways = {
        "transformers": lambda: model(
            input_ids=token, attention_mask=mask, position_ids=pos,
            cache=DynamicCache(ddp_cache_data=data), use_cache=True,
        ),
        "lean, unfused": lambda: lean_forward.forward(model, token, mask, pos, data, fuse=False),
        "lean, fused": lambda: lean_forward.forward(model, token, mask, pos, data, fuse=True),
        "lean, fused, in place": lambda: lean_forward.forward(
            model, token, mask, pos, data, fuse=True, grow=kv.grow
        ),
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, step in ways.items():
            step(), step()  # warm (and fuse)
            t = time.perf_counter()
            for _ in range(10):
                step()
            times[name].append((time.perf_counter() - t) / 10 * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--steps", action="store_true", help="also time one step alone (above)")
    ap.add_argument("--context", type=int, default=0, help="cache length for --steps")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    cache = Settings().model_cache_dir
    spec = Registry.load().get(SMOLLM2)
    tok = load_tokenizer(spec, cache)
    model = load_causal_lm(spec, cache, dtype=getattr(torch, args.dtype))
    served = load_causal_lm(spec, cache, dtype=getattr(torch, args.dtype))
    if Settings().packed_weights:  # as the engine loads it (tunelab.models.packed)
        pack_linears(served)
    text = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    worker = GenerationWorker(TorchForward(served, 1), tok, name="bench", max_batch=8, max_queued=8)
    stops = stop_token_ids(tok, worker)
    ban = dict.fromkeys(stops, -100.0)

    def plain() -> None:
        with torch.inference_mode():
            model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
            )

    def ours() -> None:
        params = SamplingParams(max_tokens=args.tokens, temperature=0, logit_bias=ban)
        gen = Generation(ids, params, stop_token_ids=stops)
        worker.submit(gen)
        last = None
        for ev in gen.events():
            last = ev
        assert isinstance(last, Finished) and last.completion_tokens == args.tokens, last

    plain(), ours()  # warm up
    runs: dict[str, list[tuple[float, float]]] = {"plain generate": [], "tunelab worker": []}
    for _ in range(args.rounds):
        runs["plain generate"].append(timed(plain))
        runs["tunelab worker"].append(timed(ours))  # the worker thread decodes meanwhile
    worker.close()
    n = args.tokens
    print(f"SmolLM2-135M {args.dtype}, {n} tokens, {args.rounds} interleaved rounds (median)")
    base_wall = statistics.median(w for w, _ in runs["plain generate"]) / n
    base_cpu = statistics.median(c for _, c in runs["plain generate"]) / n
    for name, rs in runs.items():
        wall = statistics.median(w for w, _ in rs) / n
        cpu = statistics.median(c for _, c in rs) / n
        print(
            f"{name:15} {1000 * wall:7.2f} ms/token wall ({base_wall / wall:4.2f}x plain)  "
            f"{1000 * cpu:7.2f} ms/token CPU ({base_cpu / cpu:4.2f}x plain)"
        )
    if args.steps:
        context = (ids * (args.context // len(ids) + 1))[: args.context] if args.context else ids
        for rows in (1, 8):
            ms = step_alone(served, context, rows, args.rounds)
            base = ms["transformers"]
            print(f"one step, {rows} row(s), {len(context)} cached: " + ", ".join(
                f"{name} {t:.1f} ms ({base / t:.2f}x)" for name, t in ms.items()
            ))  # fmt: skip


if __name__ == "__main__":
    main()
