"""The tutorial's "fine-tune or embeddings?" comparison, run as an eval through the API.

One eval over the held-out tickets with one `string_check` criterion (the answer
equals the ticket's label); one run per contender:

  base model and fine-tuned model   a `completions` run: each prompt sent raw, as the
                                    fine-tune was trained (greedy, a few tokens)
  embeddings + logistic regression  a `jsonl` run grading the classifier's answers,
                                    given as samples (it answers with one of the
                                    training completions)

The eval's result counts are the accuracies the walk reports, and each run's report
link shows every ticket with each contender's answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tunelab.tutorial.session import Session, StepUnavailable, needs

TERMINAL = ("completed", "failed", "canceled")


@dataclass(frozen=True)
class RunResult:
    name: str
    passed: int
    total: int
    report_url: str

    @property
    def accuracy(self) -> float:
        return self.passed / self.total if self.total else 0.0


def create_label_eval(client: Any, name: str) -> Any:
    return client.evals.create(
        name=name,
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"prompt": {"type": "string"}, "completion": {"type": "string"}},
                "required": ["prompt", "completion"],
            },
            "include_sample_schema": True,
        },
        testing_criteria=[
            {
                "type": "string_check",
                "name": "label",
                "operation": "eq",
                "input": "{{sample.output_text}}",
                "reference": "{{item.completion}}",
            }
        ],
    )


def model_run(client: Any, eval_id: str, model: str, rows: list[dict[str, Any]]) -> Any:
    """A run asking `model` each row's raw prompt, greedily."""
    return client.evals.runs.create(
        eval_id,
        name=model,
        data_source={
            "type": "completions",
            "model": model,
            "source": {"type": "file_content", "content": [{"item": r} for r in rows]},
            "input_messages": {"type": "item_reference", "item_reference": "item.prompt"},
            "sampling_params": {"temperature": 0, "max_completion_tokens": 5, "seed": 0},
        },
    )


def answers_run(
    client: Any, eval_id: str, name: str, rows: list[dict[str, Any]], answers: list[str]
) -> Any:
    """A run grading answers made elsewhere (e.g. by a classifier) as samples."""
    content = [
        {"item": r, "sample": {"output_text": a}} for r, a in zip(rows, answers, strict=True)
    ]
    return client.evals.runs.create(
        eval_id,
        name=name,
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": content}},
    )


def wait_runs(
    client: Any, eval_id: str, runs: list[Any], timeout_s: float = 1800
) -> list[RunResult]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = [client.evals.runs.retrieve(r.id, eval_id=eval_id) for r in runs]
        if all(r.status in TERMINAL for r in got):
            break
        if time.monotonic() > deadline:
            raise StepUnavailable(f"the eval runs did not finish within {timeout_s:.0f} s")
        time.sleep(1.0)
    failed = [r for r in got if r.status != "completed"]
    if failed:
        raise StepUnavailable(
            f"eval run {failed[0].id} ended {failed[0].status}: {failed[0].error}"
        )
    return [
        RunResult(r.name, r.result_counts.passed, r.result_counts.total, r.report_url) for r in got
    ]


def compare(
    session: Session,
    rows: list[dict[str, Any]],
    models: dict[str, str],
    classifier_answers: list[str],
) -> list[RunResult]:
    """Base, fine-tuned (`models`: display name -> model id) and the embeddings
    classifier graded by one eval; one result per contender, in that order."""
    client = session.client
    with needs("the Evals API (/v1/evals)"):
        ev = create_label_eval(client, "tickets: fine-tune or embeddings?")
    runs = [model_run(client, ev.id, model, rows) for model in models.values()]
    runs.append(
        answers_run(client, ev.id, "embeddings + logistic regression", rows, classifier_answers)
    )
    results = wait_runs(client, ev.id, runs)
    names = [*models, "embeddings + logistic regression"]
    return [
        RunResult(name, r.passed, r.total, r.report_url)
        for name, r in zip(names, results, strict=True)
    ]
