"""Do default ("auto") hyperparameters generalise, reproducibly? Measured with an eval.

On real labelled data nobody here wrote (WordNet definitions -> their lexical
category, `benchmarks/wordnet_senses.py`, from Debian's wordnet-base package):

  1. embeddings + logistic regression (the `tunelab classify` baseline) on the
     held-out definitions;
  2. a fine-tuning job per seed with every hyperparameter left "auto", each graded
     by one eval (string_check: the answer equals the category) over the same
     held-out rows, one run per fine-tune;
  3. the first seed once more: the same seed must give the same accuracy.

Prints each accuracy, the mean and spread over the seeds, and what "auto" chose and
why (from the job's events). Needs a tunelab server (TUNELAB_BASE_URL, default
http://127.0.0.1:8000/v1) and `apt-get install wordnet-base`.

    python benchmarks/defaults.py --seeds 1,2,3

With --parallel every job (each seed, and the first seed again) is created at once
and graded in one eval when all have finished: run one `tunelab worker` per core
beside a server without its embedded worker (TUNELAB_EMBEDDED_WORKER=false), each
pinned to its core (`taskset -c 0 tunelab worker`, `taskset -c 1 ...`), and every
job trains with one thread. On a machine others are using too, that is far faster
than one two-thread job after another: torch's threads wait for each other at every
operation whenever one of them is descheduled. A job's thread count is part of its
numerics, so compare seeds within one mode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wordnet_senses import build

MODEL = "smollm2-135m-instruct"


def rows(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        out.append({"input": messages[:-1], "reference": messages[-1]["content"]})
    return out


def baseline(client: Any, train: list[dict[str, Any]], heldout: list[dict[str, Any]]) -> float:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def embed(items: list[dict[str, Any]]) -> Any:
        texts = [r["input"][-1]["content"] for r in items]
        data = client.embeddings.create(model="all-minilm-l6-v2", input=texts).data
        return np.array([d.embedding for d in data])

    clf = LogisticRegression(C=10.0, max_iter=2000)
    clf.fit(embed(train), [r["reference"] for r in train])
    predicted = clf.predict(embed(heldout))
    return float(np.mean(predicted == np.array([r["reference"] for r in heldout])))


def fine_tune(client: Any, file_id: str, seed: int) -> Any:
    return finished(
        client, client.fine_tuning.jobs.create(model=MODEL, training_file=file_id, seed=seed)
    )


def finished(client: Any, job: Any) -> Any:
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(5)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded":
        raise SystemExit(f"job {job.id} {job.status}: {job.error}")
    return job


def eval_accuracy(client: Any, models: list[str], heldout: list[dict[str, Any]]) -> list[float]:
    ev = client.evals.create(
        name="wordnet senses",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"input": {"type": "array"}, "reference": {"type": "string"}},
                "required": ["input", "reference"],
            },
        },
        testing_criteria=[
            {"type": "string_check", "name": "category", "operation": "eq",
             "input": "{{sample.output_text}}", "reference": "{{item.reference}}"}
        ],
    )  # fmt: skip
    runs = [
        client.evals.runs.create(
            ev.id,
            name=m,
            data_source={
                "type": "completions",
                "model": m,
                "source": {"type": "file_content", "content": [{"item": r} for r in heldout]},
                "input_messages": {"type": "item_reference", "item_reference": "item.input"},
                "sampling_params": {"temperature": 0, "max_completion_tokens": 8, "seed": 0},
            },
        )
        for m in models
    ]
    while True:
        done = [client.evals.runs.retrieve(r.id, eval_id=ev.id) for r in runs]
        if all(r.status in ("completed", "failed", "canceled") for r in done):
            break
        time.sleep(3)
    return [r.result_counts.passed / max(1, r.result_counts.total) for r in done]


def main() -> None:
    import openai

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--parallel", action="store_true", help="create every job at once")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    client = openai.OpenAI(base_url=args.base_url, api_key="tunelab")
    train_path, heldout_path = build(Path(tempfile.mkdtemp(prefix="wordnet-senses-")))
    train, heldout = rows(train_path), rows(heldout_path)
    print(f"embeddings + logistic regression: {baseline(client, train, heldout):.3f}", flush=True)
    print(f"base {MODEL}: {eval_accuracy(client, [MODEL], heldout)[0]:.3f}", flush=True)
    uploaded = client.files.create(file=train_path.open("rb"), purpose="fine-tune")
    if args.parallel:
        parallel(client, uploaded.id, seeds, heldout)
        return
    # One job at a time, each graded as soon as it finishes, so a long run reports as
    # it goes; the first seed runs again last.
    per_seed: list[float] = []
    for k, seed in enumerate([*seeds, seeds[0]]):
        job = fine_tune(client, uploaded.id, seed)
        if k == 0:
            print_auto(client, job)
        acc = eval_accuracy(client, [job.fine_tuned_model], heldout)[0]
        again = " (again)" if k == len(seeds) else ""
        print(f"fine-tuned, auto hyperparameters, seed {seed}{again}: {acc:.3f}", flush=True)
        if k < len(seeds):
            per_seed.append(acc)
    print(
        f"mean {statistics.mean(per_seed):.3f}, spread (max - min) "
        f"{max(per_seed) - min(per_seed):.3f}",
        flush=True,
    )


def print_auto(client: Any, job: Any) -> None:
    for e in reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))):
        if "auto" in e.message:
            print("  ", e.message, flush=True)


def parallel(client: Any, file_id: str, seeds: list[int], heldout: list[dict[str, Any]]) -> None:
    runs = [*seeds, seeds[0]]
    jobs = [
        client.fine_tuning.jobs.create(model=MODEL, training_file=file_id, seed=s) for s in runs
    ]
    jobs = [finished(client, job) for job in jobs]
    print_auto(client, jobs[0])
    accuracies = eval_accuracy(client, [j.fine_tuned_model for j in jobs], heldout)
    for k, (seed, acc) in enumerate(zip(runs, accuracies, strict=True)):
        again = " (again)" if k == len(seeds) else ""
        print(f"fine-tuned, auto hyperparameters, seed {seed}{again}: {acc:.3f}", flush=True)
    per_seed = accuracies[: len(seeds)]
    print(
        f"mean {statistics.mean(per_seed):.3f}, spread (max - min) "
        f"{max(per_seed) - min(per_seed):.3f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
