"""Training throughput: tunelab's loop vs. a plain transformers+peft loop vs. the machine.

    python benchmarks/training.py [--steps 6] [--batch-size 8] [--model smollm2-135m-instruct]

All runs use the same data (synthetic chat examples of mixed length), the same
LoRA settings (r=16, alpha=32, all linear layers), the same batch size and the same
number of optimizer steps. Reported: trained-on tokens per second (real tokens,
not padding), the ratio to the plain loop, and model FLOP utilisation against
the measured matmul peak of this machine (6 * params * tokens per second over
the bf16 / fp32 torch.matmul peak).

  tunelab       tunelab.training.loop.train, the code a job runs (packing, bf16
                autocast where supported, logits only on trained tokens)
  tunelab fp32  the same loop with bf16 off
  plain fp32    what a user would write: tokenizer(padding=True) batches, full
                logits, model(labels=...), fp32

trl's SFTTrainer is not part of tunelab's dependencies and is not compared here.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tunelab.hardware import bf16_fast  # noqa: E402
from tunelab.models.loading import load_causal_lm, load_tokenizer, model_dir  # noqa: E402
from tunelab.models.registry import Registry  # noqa: E402
from tunelab.settings import Settings  # noqa: E402
from tunelab.training.config import TrainConfig  # noqa: E402
from tunelab.training.events import (  # noqa: E402
    Control,
    EventWriter,
    MetricsEvent,
    read_events,
)
from tunelab.training.loop import train  # noqa: E402

WORDS = [
    "the",
    "a",
    "ship",
    "sails",
    "over",
    "calm",
    "blue",
    "water",
    "while",
    "gulls",
    "circle",
    "and",
    "the",
    "crew",
    "sings",
    "old",
    "songs",
    "of",
    "home",
]


def make_data(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 150)))
            msgs = [{"role": "user", "content": f"{i}: {q}?"}, {"role": "assistant", "content": a}]
            fh.write(json.dumps({"messages": msgs}) + "\n")


def matmul_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def run_tunelab(cfg: TrainConfig, work: Path) -> tuple[float, int]:
    events_path = Path(cfg.output_dir) / "events.jsonl"
    events_path.parent.mkdir(parents=True, exist_ok=True)
    events = EventWriter(events_path)
    train(cfg, events, Control(work))
    events.close()
    written, _ = read_events(events_path, 0)
    metrics = [e for e in written if isinstance(e, MetricsEvent)]
    # Skip the first step (allocator / oneDNN warm-up), as the plain loop does.
    first, last = metrics[0], metrics[-1]
    return last.elapsed_s - first.elapsed_s, last.trained_tokens - first.trained_tokens


def run_plain(spec: Any, cache: Path, data: Path, steps: int, batch_size: int) -> tuple[float, int]:
    from peft import LoraConfig, get_peft_model

    from tunelab.data.encoding import encode_example
    from tunelab.data.examples import iter_examples

    tok = load_tokenizer(spec, cache)
    model = get_peft_model(
        load_causal_lm(spec, cache),
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    ).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    encoded = [encode_example(tok, ex, max_length=2048) for ex in iter_examples(data)]
    elapsed, tokens = 0.0, 0
    for step in range(steps):
        batch = encoded[step * batch_size : (step + 1) * batch_size]
        width = max(len(e.input_ids) for e in batch)
        pad = tok.pad_token_id
        ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in batch])
        mask = torch.tensor(
            [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch]
        )
        labels = torch.tensor([e.labels + [-100] * (width - len(e.labels)) for e in batch])
        start = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step > 0:  # the same warm-up exclusion as for tunelab
            elapsed += time.perf_counter() - start
            tokens += int(mask.sum())
    return elapsed, tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()

    settings = Settings()
    spec = Registry.for_settings(settings).get(args.model)
    cache = settings.model_cache_dir
    model_dir(spec, cache)  # convert once, outside the timings
    n_params = sum(p.numel() for p in load_causal_lm(spec, cache).parameters())
    print(
        f"model {spec.id}: {n_params / 1e6:.1f}M parameters, {torch.get_num_threads()} threads, "
        f"native bf16: {bf16_fast('cpu')}"
    )
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data.jsonl"
        make_data(data, args.steps * args.batch_size)
        cfg = TrainConfig(
            base_model=spec.id,
            model_source=spec.source,
            gguf_file=spec.gguf_file,
            model_options=dict(spec.options),
            cache_dir=str(cache),
            training_file=str(data),
            output_dir=str(work / "out"),
            n_epochs=1,
            batch_size=args.batch_size,
        )
        results: dict[str, tuple[float, int]] = {}
        results["tunelab"] = run_tunelab(cfg, work)
        # The same loop without bf16: what packing and trained-only logits give alone.
        fp32 = TrainConfig.from_json(cfg.to_json())
        fp32.bf16, fp32.output_dir = False, str(work / "out-fp32")
        results["tunelab fp32"] = run_tunelab(fp32, work)
        results["plain fp32"] = run_plain(spec, cache, data, args.steps, args.batch_size)

    base = results["plain fp32"][1] / results["plain fp32"][0]
    print(
        f"\n{'run':<13} {'tokens':>7} {'seconds':>8} {'tok/s':>8} {'vs plain':>9} "
        f"{'MFU bf16':>9} {'MFU fp32':>9}"
    )
    for name, (secs, toks) in results.items():
        rate = toks / secs
        flops = 6 * n_params * rate
        print(
            f"{name:<13} {toks:>7} {secs:>8.1f} {rate:>8.0f} {rate / base:>8.2f}x "
            f"{flops / peaks['bf16']:>8.1%} {flops / peaks['fp32']:>8.1%}"
        )


if __name__ == "__main__":
    main()
