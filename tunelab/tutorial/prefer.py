"""Step 9: preference fine-tuning (DPO) — pairs of answers, one preferred, and the
model's own answers shift towards the preferred kind (here: short instead of rambling)."""

from __future__ import annotations

from rich.table import Table

from tunelab.tutorial.finetune import chat, run_job
from tunelab.tutorial.session import Session, read_jsonl

# Held-out questions (examples/concise_heldout.jsonl) shown side by side; every one of
# the file's questions counts in the mean length.
SHOWN = 4


def words(text: str) -> int:
    return len(text.split())


def step_prefer(session: Session) -> None:
    session.title(9, "preference fine-tuning (DPO): shorter answers")
    path = session.example("concise_train.jsonl")
    session.show(
        f"tunelab jobs create -t {path.relative_to(session.examples.parent)} "
        f"-m {session.chat_model} --method dpo --suffix concise",
        f"""
f = client.files.create(file=open("examples/concise_train.jsonl", "rb"), purpose="fine-tune")
job = client.fine_tuning.jobs.create(
    model="{session.chat_model}", training_file=f.id, suffix="concise",
    method={{"type": "dpo", "dpo": {{"hyperparameters": {{"beta": 0.1}}}}}},
)
""",
    )
    session.console.print(
        "36 pairs: the preferred answer is a short one written by hand, the rejected one "
        "is what the base model itself answers (rambling, often wrong)"
    )
    f = session.upload(path)
    job = run_job(session, f.id, suffix="concise", n_epochs=3, method="dpo")
    questions = [
        str(row["input"]["messages"][-1]["content"])
        for row in read_jsonl(session.example("concise_heldout.jsonl"))
    ]
    table = Table(title="New questions, temperature 0", show_lines=True)
    table.add_column("question")
    table.add_column(f"base: {session.chat_model}")
    table.add_column("after DPO")
    total = {"base": 0, "dpo": 0}
    for i, q in enumerate(questions):
        base = chat(session, session.chat_model, q, max_tokens=48)
        tuned = chat(session, job.fine_tuned_model, q, max_tokens=48)
        total["base"] += words(base)
        total["dpo"] += words(tuned)
        if i < SHOWN:
            table.add_row(q, base, tuned)
    session.console.print(table)
    n = len(questions)
    mean = {k: round(v / n, 1) for k, v in total.items()}
    session.results["dpo words per answer"] = f"base {mean['base']}, after DPO {mean['dpo']}"
    session.console.print(
        f"mean words per answer over {n} new questions: base {mean['base']}, "
        f"after DPO {mean['dpo']}"
    )
