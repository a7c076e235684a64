"""Steps 3-4: fine-tune a persona model with a live progress bar, then compare it with
its base model side by side. `run_job` is shared by the later fine-tuning steps."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tunelab.tutorial.session import Session, StepUnavailable, needs

TERMINAL = ("succeeded", "failed", "cancelled")
PERSONA_GREETING = "Ahoy, matey!"
# New questions: none of them is in examples/persona.jsonl.
PERSONA_QUESTIONS = [
    "What is the tallest mountain in the world?",
    "How do I make a cup of tea?",
    "What should I name my dog?",
]


def run_job(
    session: Session,
    training_file: str,
    *,
    suffix: str,
    n_epochs: int,
    learning_rate_multiplier: float | None = None,
    validation_file: str | None = None,
    method: str = "supervised",
    timeout_s: float = 3600,
) -> Any:
    """Create a fine-tuning job (`method`: supervised or dpo) and follow it to the end
    with a progress bar (step, loss) fed by the job's metrics events; the finished job,
    or StepUnavailable."""
    client = session.client
    hyper: dict[str, Any] = {"n_epochs": n_epochs}
    if learning_rate_multiplier is not None:
        hyper["learning_rate_multiplier"] = learning_rate_multiplier
    with needs("the fine-tuning API (/v1/fine_tuning/jobs)"):
        job = client.fine_tuning.jobs.create(
            model=session.chat_model,
            training_file=training_file,
            suffix=suffix,
            seed=42,
            method={"type": method, method: {"hyperparameters": hyper}},
            **({"validation_file": validation_file} if validation_file else {}),
        )
    session.track("jobs", job.id)
    session.console.print(f"created job [bold]{job.id}[/bold] ({job.status})")
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("step"),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=session.console, transient=False) as progress:
        bar = progress.add_task(f"{suffix}: {job.status}", total=None, loss="")
        while True:
            job = client.fine_tuning.jobs.retrieve(job.id)
            events = list(client.fine_tuning.jobs.list_events(job.id, limit=50))
            for e in reversed(events):  # the API lists newest first
                if e.id not in seen and e.type != "metrics":
                    progress.console.print(f"  [dim]{e.message}[/dim]")
                seen.add(e.id)
            metrics = next((e.data for e in events if e.type == "metrics" and e.data), None)
            if metrics:
                progress.update(
                    bar,
                    total=metrics.get("total_steps"),
                    completed=metrics.get("step", 0),
                    loss=f"loss {metrics.get('train_loss', float('nan')):.3f}",
                )
            progress.update(bar, description=f"{suffix}: {job.status}")
            if job.status in TERMINAL:
                break
            if time.monotonic() > deadline:
                client.fine_tuning.jobs.cancel(job.id)
                raise StepUnavailable(
                    f"job {job.id} did not finish within {timeout_s:.0f} s; it was cancelled"
                )
            time.sleep(1.0)
    if job.status != "succeeded":
        why = job.error.message if job.error and job.error.message else job.status
        raise StepUnavailable(f"fine-tuning job {job.id} ended {job.status}: {why}")
    session.track("models", job.fine_tuned_model)
    session.console.print(
        f"fine-tuned model: [bold green]{job.fine_tuned_model}[/bold green] "
        f"({job.trained_tokens} trained tokens)"
    )
    return job


def step_finetune(session: Session) -> None:
    session.title(3, "fine-tune a persona model")
    path = session.example("persona.jsonl")
    session.show(
        f"tunelab jobs create -t {path.relative_to(session.examples.parent)} -m {session.chat_model} "
        "--suffix pirate --n-epochs 3\ntunelab jobs follow <job id>",
        f"""
import time
f = client.files.create(file=open("examples/persona.jsonl", "rb"), purpose="fine-tune")
job = client.fine_tuning.jobs.create(
    model="{session.chat_model}", training_file=f.id, suffix="pirate",
    method={{"type": "supervised", "supervised": {{"hyperparameters": {{"n_epochs": 3}}}}}},
)
while job.status not in ("succeeded", "failed", "cancelled"):
    time.sleep(2)
    job = client.fine_tuning.jobs.retrieve(job.id)
    for event in client.fine_tuning.jobs.list_events(job.id, limit=1):
        print(job.status, event.message)
print(job.fine_tuned_model)
""",
    )
    session.console.print(f'30 chat examples; every answer opens with "{PERSONA_GREETING}"')
    f = session.upload(path)
    job = run_job(session, f.id, suffix="pirate", n_epochs=3)
    session.state["persona_model"] = job.fine_tuned_model


def chat(session: Session, model: str, question: str, max_tokens: int = 40) -> str:
    with needs("chat completions (/v1/chat/completions)"):
        r = session.client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            max_tokens=max_tokens,
        )
    return (r.choices[0].message.content or "").strip()


def step_compare(session: Session) -> None:
    session.title(4, "call the fine-tuned model next to its base")
    model = session.state.get("persona_model")
    if not model:
        raise StepUnavailable("run step 3 (fine-tune) first: there is no persona model")
    session.show(
        f'tunelab chat -m {model} "{PERSONA_QUESTIONS[0]}"',
        f"""
for model in ["{session.chat_model}", "{model}"]:
    r = client.chat.completions.create(
        model=model, temperature=0, max_tokens=40,
        messages=[{{"role": "user", "content": "{PERSONA_QUESTIONS[0]}"}}],
    )
    print(model, "->", r.choices[0].message.content)
""",
    )
    table = Table(title="Same question, temperature 0", show_lines=True)
    table.add_column("question")
    table.add_column(f"base: {session.chat_model}")
    table.add_column("fine-tuned")
    in_persona = {"base": 0, "fine-tuned": 0}
    for q in PERSONA_QUESTIONS:
        base, tuned = chat(session, session.chat_model, q), chat(session, model, q)
        in_persona["base"] += base.startswith("Ahoy")
        in_persona["fine-tuned"] += tuned.startswith("Ahoy")
        table.add_row(q, base, tuned)
    session.console.print(table)
    n = len(PERSONA_QUESTIONS)
    session.results["persona"] = {k: f"{v}/{n}" for k, v in in_persona.items()}
    session.console.print(
        f"answers opening with the persona greeting: base {in_persona['base']}/{n}, "
        f"fine-tuned {in_persona['fine-tuned']}/{n}"
    )
