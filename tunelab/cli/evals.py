"""`tunelab evals ...`: compare models on held-out data through the Evals API.

    tunelab evals run --models smollm2-135m-instruct,ft:...,ft:...:ckpt-step-40 \\
        --data heldout.jsonl --grader exact

makes one eval (the grader) over the file's rows, one run per model, waits, and
prints the comparison. Rows are training-format lines: chat lines are asked with
their messages up to the last assistant turn, whose text is the reference;
prompt/completion lines are asked with the raw prompt (as the model was trained)
and the completion is the reference.

Graders: exact (string equal), contains (reference in the answer, any case),
fuzzy_match|bleu|gleu|meteor|rouge_1..5|rouge_l|cosine[:THRESHOLD] (default 0.5),
label:JUDGE_MODEL (the judge says correct/incorrect), or a JSON file holding one
testing criterion.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from tunelab.cli.client import api_errors, json_option, make_client, print_json, print_table
from tunelab.evals.similarity import METRICS

ANSWER, REFERENCE = "{{sample.output_text}}", "{{item.reference}}"


@click.group("evals")
def evals_group() -> None:
    """Evaluate models with graders (OpenAI's Evals API)."""


def rows_from(path: Path) -> tuple[list[dict[str, Any]], str]:
    """(eval rows, the item field the model is asked with: "input" or "prompt")."""
    rows, kinds = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise click.ClickException(f"{path}:{n} is not JSON ({e})") from None
        if isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            msgs = obj["messages"]
            last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=-1)
            if last < 1:
                raise click.ClickException(f"{path}:{n} has no assistant answer after a question")
            item = {"input": msgs[:last], "reference": str(msgs[last].get("content") or "")}
            kinds.add("input")
        elif isinstance(obj, dict) and "prompt" in obj and "completion" in obj:
            item = {"prompt": str(obj["prompt"]), "reference": str(obj["completion"])}
            kinds.add("prompt")
        else:
            raise click.ClickException(
                f"{path}:{n} is neither a chat line ({{'messages'}}) nor prompt/completion"
            )
        rows.append({"item": item})
    if len(kinds) != 1:
        raise click.ClickException(f"{path} must hold one format (chat or prompt/completion)")
    return rows, kinds.pop()


def criterion(grader: str) -> dict[str, Any]:
    """The testing criterion named on the command line."""
    name, _, arg = grader.partition(":")
    if name == "exact":
        return {"type": "string_check", "name": "exact", "input": ANSWER,
                "reference": REFERENCE, "operation": "eq"}  # fmt: skip
    if name == "contains":
        return {"type": "string_check", "name": "contains", "input": ANSWER,
                "reference": REFERENCE, "operation": "ilike"}  # fmt: skip
    if name in METRICS:
        return {"type": "text_similarity", "name": name, "input": ANSWER, "reference": REFERENCE,
                "evaluation_metric": name, "pass_threshold": float(arg or 0.5)}  # fmt: skip
    if name == "label" and arg:
        prompt = ("Reference answer: {{item.reference}}\nModel answer: {{sample.output_text}}\n"
                  "Does the model answer say the same as the reference?")  # fmt: skip
        return {"type": "label_model", "name": "judge", "model": arg,
                "input": [{"role": "user", "content": prompt}],
                "labels": ["correct", "incorrect"], "passing_labels": ["correct"]}  # fmt: skip
    path = Path(grader)
    if path.is_file():
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise click.ClickException(f"{path} must hold one testing criterion (a JSON object)")
        return loaded
    raise click.ClickException(
        f"Unknown grader {grader!r}: use exact, contains, a metric like rouge_l:0.6, "
        "label:JUDGE_MODEL, or a JSON file with a testing criterion."
    )


def wait(client: Any, eval_id: str, run_ids: list[str], n_rows: int, timeout_s: float) -> list[Any]:
    """The runs once all have finished; progress on stderr meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [client.evals.runs.retrieve(r, eval_id=eval_id) for r in run_ids]
        if all(r.status in ("completed", "failed", "canceled") for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise click.ClickException(f"runs not finished after {timeout_s:.0f} s: {run_ids}")
        done = sum(r.result_counts.total for r in runs)
        click.echo(f"\r{done}/{n_rows * len(runs)} rows graded", nl=False, err=True)
        time.sleep(1.0)


@evals_group.command("run")
@click.option("--models", required=True, help="Comma-separated: base, ft: or checkpoint models.")
@click.option("--data", "data", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--grader", default="exact", show_default=True)
@click.option("--max-tokens", type=int, default=64, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=3600, show_default=True)
@json_option
@api_errors
def evals_run(
    models: str,
    data: Path,
    grader: str,
    max_tokens: int,
    temperature: float,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Grade each model on the held-out rows and print the comparison table."""
    client = make_client()
    rows, field = rows_from(data)
    schema_field = {"type": "array"} if field == "input" else {"type": "string"}
    ev = client.evals.create(
        name=f"{data.name} ({grader})",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {field: schema_field, "reference": {"type": "string"}},
                "required": [field, "reference"],
            },
        },
        testing_criteria=[criterion(grader)],
    )
    upload = client.files.create(
        file=(data.name, "\n".join(json.dumps(r) for r in rows).encode()), purpose="evals"
    )
    run_ids = []
    for model in [m.strip() for m in models.split(",") if m.strip()]:
        run = client.evals.runs.create(
            ev.id,
            name=model,
            data_source={
                "type": "completions",
                "model": model,
                "source": {"type": "file_id", "id": upload.id},
                "input_messages": {"type": "item_reference", "item_reference": f"item.{field}"},
                "sampling_params": {
                    "temperature": temperature,
                    "max_completion_tokens": max_tokens,
                    "seed": 0,
                },
            },
        )
        run_ids.append(run.id)
    runs = wait(client, ev.id, run_ids, len(rows), timeout_s)
    click.echo("", err=True)
    if as_json:
        print_json([r.model_dump() for r in runs])
        return
    table = []
    for r in runs:
        c = r.result_counts
        scores = [
            item.results[0].score
            for item in client.evals.runs.output_items.list(r.id, eval_id=ev.id, limit=100)
            if item.results
        ]
        mean = f"{sum(scores) / len(scores):.3f}" if scores else ""
        rate = f"{c.passed / c.total:.3f}" if c.total else ""
        table.append([r.model, r.status, c.passed, c.failed, c.errored, rate, mean])
    print_table(
        ["model", "status", "passed", "failed", "errored", "pass rate", "mean score"],
        table,
        title=f"{grader} on {len(rows)} rows of {data.name} (eval {ev.id})",
    )
    for r in runs:
        click.echo(f"{r.model}: {r.report_url}")


commands = [evals_group]
