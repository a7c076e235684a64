"""Does a DPO job move a real model towards the preferred answers? Concise vs verbose.

`examples/concise_train.jsonl` (36 pairs) prefers a short hand-written answer to the
base model's own greedy answer (rambling, often wrong);
`examples/concise_heldout.jsonl` (12 pairs) asks other questions. Through a tunelab
server (the official SDK): one DPO job, then on the held-out pairs, for the base and
the fine-tune,

  - the fraction of pairs where the preferred answer has the higher log-probability,
    summed over the answer's tokens and per token (a short answer is more likely in
    total even to a model that prefers chatty answers, so the per-token fraction is the
    one that can move), computed here from the weights on disk with tunelab's own
    `training.dpo` code;
  - the greedy answers to the held-out questions (chat completions) and their mean
    length in words.

Needs the server's data directory on this machine (the fine-tune's weights are read
from it):

    python benchmarks/dpo_concise.py --base-url http://127.0.0.1:8000/v1 --data-dir ~/.tunelab
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"


def fractions(model: Any, tokenizer: Any, pairs_file: Path) -> tuple[float, float]:
    """(summed, per-token) fraction of pairs whose preferred answer is more likely."""
    import torch

    from tunelab.training.dpo import encode_pairs, sequence_logps

    pairs = encode_pairs(tokenizer, pairs_file, 2048)
    model.eval()
    with torch.no_grad():
        chosen = sequence_logps(model, [p.chosen for p in pairs], 4096, "cpu", False)
        rejected = sequence_logps(model, [p.rejected for p in pairs], 4096, "cpu", False)
    n_c = torch.tensor([p.chosen.n_targets for p in pairs], dtype=torch.float)
    n_r = torch.tensor([p.rejected.n_targets for p in pairs], dtype=torch.float)
    return (
        float((chosen > rejected).float().mean()),
        float((chosen / n_c > rejected / n_r).float().mean()),
    )


def answers(client: Any, model: str, questions: list[str]) -> list[str]:
    out = []
    for q in questions:
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": q}],
            temperature=0,
            max_tokens=48,
        )
        out.append((r.choices[0].message.content or "").strip())
    return out


def main() -> None:
    import openai
    from peft import PeftModel

    from tunelab.models.loading import load_causal_lm, load_tokenizer
    from tunelab.models.registry import Registry
    from tunelab.settings import Settings
    from tunelab.training import checkpoints

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--learning-rate-multiplier", default="auto")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="tunelab")
    train = ROOT / "examples" / "concise_train.jsonl"
    heldout = ROOT / "examples" / "concise_heldout.jsonl"
    lrm = args.learning_rate_multiplier
    hp: dict[str, Any] = {"learning_rate_multiplier": lrm if lrm == "auto" else float(lrm)}

    uploaded = client.files.create(file=train.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=MODEL, training_file=uploaded.id, seed=1,
        method={"type": "dpo", "dpo": {"hyperparameters": hp}},
    )  # fmt: skip
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(5)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded":
        raise SystemExit(f"job {job.id} {job.status}: {job.error}")
    print(f"job {job.id}: {job.method.dpo.hyperparameters}", flush=True)
    metrics = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)
               if e.type == "metrics"][::-1]  # fmt: skip
    for m in (metrics[0], metrics[-1]):
        print(
            f"  step {m['step']}: DPO loss {m['train_loss']:.3f}, reward margin "
            f"{m['train_reward_margin']:.3f}, reward accuracy {m['train_reward_accuracy']:.2f}"
        )

    settings = Settings(data_dir=args.data_dir)
    spec = Registry.for_settings(settings).find(MODEL)
    assert spec is not None
    tokenizer = load_tokenizer(spec, settings.model_cache_dir)
    base = load_causal_lm(spec, settings.model_cache_dir, device="cpu")
    before = fractions(base, tokenizer, heldout)
    final = checkpoints.latest(settings.models_dir / job.id)
    assert final is not None
    tuned = PeftModel.from_pretrained(base, str(final.path))
    after = fractions(tuned, tokenizer, heldout)
    print(f"held-out preferred fraction, summed log-prob: base {before[0]:.3f} -> {after[0]:.3f}")
    print(f"held-out preferred fraction, per-token:       base {before[1]:.3f} -> {after[1]:.3f}")

    questions = [
        json.loads(line)["input"]["messages"][-1]["content"]
        for line in heldout.read_text(encoding="utf-8").splitlines()
    ]
    said = {name: answers(client, name, questions) for name in (MODEL, job.fine_tuned_model)}
    for name, texts in said.items():
        words = sum(len(t.split()) for t in texts) / len(texts)
        print(f"\n{name}: {words:.1f} words per answer")
        for q, t in list(zip(questions, texts, strict=True))[:6]:
            print(f"  {q} -> {t!r}")


if __name__ == "__main__":
    main()
