"""Tool-use fine-tuning: how often SmolLM2 calls `convert_currency` right, before and after.

The training set (tests/tool_use_data.py: 30 function-calling lines + 10 plain
questions, OpenAI's format) is fine-tuned through the real API (upload, job,
worker, training process); both models then answer the 8 held-out questions
through /v1/chat/completions with the tool offered (tool_choice "auto",
temperature 0). A held-out answer counts when it is exactly one call with the
expected arguments. The grammar keeps every call schema-valid, so what the rate
measures is whether the model calls, and with the right values.

    .venv/bin/python benchmarks/tool_use.py [--epochs 3] [--lr 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import run_server, sdk, wait_until
from tests.tool_use_data import TOOL, heldout, jsonl, score, training_lines
from tunelab.models.registry import SMOLLM2
from tunelab.settings import Settings


def rate(client: Any, model: str) -> tuple[float, float, list[str]]:
    """(share of held-out questions answered with the right call, share with any call,
    the answers as text)."""

    def ask(item: tuple[str, dict[str, Any]]) -> tuple[bool, bool, str]:
        q, expected = item
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": q}],
            tools=[TOOL],
            temperature=0,
            max_tokens=60,
        )
        m = r.choices[0].message
        shown = m.content or str([(c.function.name, c.function.arguments) for c in m.tool_calls])
        return score(m, expected), bool(m.tool_calls), shown

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, heldout()))
    n = len(results)
    return sum(r[0] for r in results) / n, sum(r[1] for r in results) / n, [r[2] for r in results]


def fine_tune(client: Any, epochs: int, lr: float) -> str:
    train = client.files.create(file=("tools.jsonl", jsonl(training_lines())), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=SMOLLM2,
        training_file=train.id,
        hyperparameters={"n_epochs": epochs, "learning_rate_multiplier": lr},
    )
    done = wait_until(
        lambda: (
            (j := client.fine_tuning.jobs.retrieve(job.id)).status
            in ("succeeded", "failed", "cancelled")
            and j
        ),
        timeout=3600,
        every=2,
    )
    assert done.status == "succeeded", done.error
    return str(done.fine_tuned_model)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            cache_dir=Settings().model_cache_dir,
            worker_poll_seconds=0.5,
        )
        with run_server(settings) as url:
            client = sdk(url).with_options(timeout=3600)  # the machine may be busy
            t = time.perf_counter()
            base_right, base_calls, base_answers = rate(client, SMOLLM2)
            model = fine_tune(client, args.epochs, args.lr)
            tuned_right, tuned_calls, tuned_answers = rate(client, model)
            wall = time.perf_counter() - t
    print(f"\nconvert_currency on {len(heldout())} held-out questions (tool_choice auto, greedy)")
    print(f"{'model':28} {'right call':>10} {'any call':>9}")
    print(f"{'base ' + SMOLLM2:28} {base_right:10.0%} {base_calls:9.0%}")
    print(f"{'fine-tuned':28} {tuned_right:10.0%} {tuned_calls:9.0%}")
    print(f"(fine-tune: {len(training_lines())} lines x {args.epochs} epochs; {wall:.0f} s in all)")
    print("\nfirst answers, base:", base_answers[:2], "\nfirst answers, tuned:", tuned_answers[:2])


if __name__ == "__main__":
    main()
