"""Step 8 and `tunelab classify`: classification two ways — a fine-tuning job, and the
cheap alternative the tutorial implies: embeddings + logistic regression.

The embeddings classifier embeds each prompt through the server (the same
`/v1/embeddings` any client uses) and fits scikit-learn's LogisticRegression on the
vectors; it trains in a second, where a fine-tuning job takes minutes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.tutorial.session import Session, StepUnavailable, needs

EMBED_BATCH = 128


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]


@dataclass
class Scores:
    accuracy: float
    f1: float  # weighted F1, as the legacy classification metrics report it
    n: int

    def __str__(self) -> str:
        return f"accuracy {self.accuracy:.3f}, weighted F1 {self.f1:.3f} on {self.n} examples"


def read_labelled(path: Path) -> Labelled:
    """prompt/completion rows from any file prepare-data reads (CSV, TSV, XLSX, JSON, JSONL).

    Labels are the completions without surrounding whitespace; a separator that ends
    every prompt (prepare-data adds one, e.g. "\\n\\n###\\n\\n") is removed, since it
    carries no information about the class.
    """
    with needs("the data readers (tunelab.data.readers)"):
        from tunelab.data.readers import read_records
    rows = [r.obj for r in read_records(path).records]
    pairs = [
        (str(r.get("prompt", "")), str(r.get("completion", "")).strip())
        for r in rows
        if isinstance(r, dict)
    ]
    pairs = [(p, c) for p, c in pairs if p.strip() and c]
    if not pairs:
        raise ValueError(f"{path.name} has no rows with a non-empty `prompt` and `completion`")
    texts = [p for p, _ in pairs]
    # commonprefix compares strings character by character: here, reversed texts.
    reversed_texts = [t[::-1] for t in texts]
    suffix = os.path.commonprefix(reversed_texts)[::-1] if len(texts) > 1 else ""  # noqa: RUF071
    if suffix:
        texts = [t[: -len(suffix)] for t in texts]
    return Labelled([t.strip() for t in texts], [c for _, c in pairs])


def embed(client: Any, model: str, texts: list[str]) -> Any:
    import numpy as np

    vectors = []
    for i in range(0, len(texts), EMBED_BATCH):
        r = client.embeddings.create(model=model, input=texts[i : i + EMBED_BATCH])
        vectors += [d.embedding for d in r.data]
    return np.asarray(vectors, dtype=np.float32)


def scores(truth: list[str], predicted: list[str]) -> Scores:
    from sklearn.metrics import accuracy_score, f1_score

    return Scores(
        float(accuracy_score(truth, predicted)),
        float(f1_score(truth, predicted, average="weighted", zero_division=0)),
        len(truth),
    )


def embedding_classifier(
    client: Any, model: str, train: Labelled, test: Labelled
) -> tuple[Scores, list[str]]:
    """Fit logistic regression on the train embeddings; (scores on test, test predictions)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(train.labels)) < 2:
        raise ValueError("the training data has a single class; a classifier needs at least two")
    # Unit-length vectors have small coordinates: weaker regularisation (C=10) fits them
    # better than the default C=1.
    clf = LogisticRegression(C=10.0, max_iter=2000)
    clf.fit(embed(client, model, train.texts), train.labels)
    predicted = [str(p) for p in clf.predict(embed(client, model, test.texts))]
    return scores(test.labels, predicted), predicted


def split(data: Labelled, test_size: float = 0.2) -> tuple[Labelled, Labelled]:
    """A stratified, seeded train/test split (when no test file is given)."""
    from sklearn.model_selection import train_test_split

    tr_x, te_x, tr_y, te_y = train_test_split(
        data.texts, data.labels, test_size=test_size, random_state=42, stratify=data.labels
    )
    return Labelled(tr_x, tr_y), Labelled(te_x, te_y)


def fine_tuned_classifier(client: Any, model: str, valid_rows: list[dict[str, Any]]) -> Scores:
    """Ask the fine-tuned model for each validation prompt's class (greedy, a few tokens)."""
    predicted = []
    for row in valid_rows:
        with needs("legacy completions (/v1/completions)"):
            r = client.completions.create(
                model=model, prompt=row["prompt"], max_tokens=5, temperature=0, stop=["\n"]
            )
        words = r.choices[0].text.split()
        predicted.append(words[0] if words else "")
    return scores([row["completion"].strip() for row in valid_rows], predicted)


def job_validation_metrics(client: Any, job_id: str) -> dict[str, Any]:
    """The last validation numbers the job reported in its metrics events."""
    for e in client.fine_tuning.jobs.list_events(job_id, limit=100):  # newest first
        data = e.data or {}
        found = {
            k: v for k, v in data.items() if k.startswith(("valid", "full_valid", "classification"))
        }
        if e.type == "metrics" and found:
            return found
    return {}


def step_classify(session: Session) -> None:
    from rich.table import Table

    from tunelab.tutorial.compare import compare
    from tunelab.tutorial.data import prepare
    from tunelab.tutorial.finetune import run_job
    from tunelab.tutorial.session import read_jsonl

    session.title(8, "classification: fine-tune a classifier, or embeddings + logistic regression?")
    session.show(
        "tunelab prepare-data -f examples/tickets.csv -q  # classification: train/valid split\n"
        "tunelab jobs create -t tickets_prepared_train.jsonl -v tickets_prepared_valid.jsonl "
        f"-m {session.chat_model} --suffix tickets --n-epochs 3 --learning-rate-multiplier 4\n"
        "tunelab classify --train tickets_prepared_train.jsonl "
        "--test tickets_prepared_valid.jsonl\n"
        f"tunelab evals run --models {session.chat_model},ft:... "
        "--data tickets_prepared_valid.jsonl --grader exact",
        f"""
import numpy as np, json
from sklearn.linear_model import LogisticRegression
rows = lambda p: [json.loads(l) for l in open(p, encoding="utf-8")]
def embed(texts):
    r = client.embeddings.create(model="{session.embedding_model}", input=texts)
    return np.array([d.embedding for d in r.data])
train, valid = rows("tickets_prepared_train.jsonl"), rows("tickets_prepared_valid.jsonl")
clf = LogisticRegression(C=10.0, max_iter=2000).fit(
    embed([r["prompt"] for r in train]), [r["completion"].strip() for r in train])
predicted = clf.predict(embed([r["prompt"] for r in valid]))
print((predicted == np.array([r["completion"].strip() for r in valid])).mean())
""",
    )
    written = prepare(session, "tickets.csv", session.workdir / "tickets_prepared.jsonl")
    if len(written) != 2:
        raise StepUnavailable("prepare-data did not split tickets.csv into train and valid files")
    train_path, valid_path = written
    emb_scores, emb_predicted = embedding_classifier(
        session.client,
        session.embedding_model,
        read_labelled(train_path),
        read_labelled(valid_path),
    )
    session.console.print(f"\n[bold]embeddings + logistic regression[/bold]: {emb_scores}")
    session.results["classification"] = {"embeddings+LR accuracy": round(emb_scores.accuracy, 3)}
    if session.fast:
        return
    train_file, valid_file = session.upload(train_path), session.upload(valid_path)
    # Measured on the tickets: 1 epoch at the auto learning rate scores below chance
    # (0.23); 3 epochs at 4x reach 0.94, in under two minutes of training.
    job = run_job(
        session,
        train_file.id,
        validation_file=valid_file.id,
        suffix="tickets",
        n_epochs=3,
        learning_rate_multiplier=4.0,
    )
    reported = job_validation_metrics(session.client, job.id)
    if reported:
        session.console.print(
            "job's validation metrics: "
            + ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in reported.items()
            )
        )
    # The comparison itself is an eval: one string_check criterion, one run per contender.
    valid_rows = read_jsonl(valid_path)
    completion_of = {r["completion"].strip(): r["completion"] for r in read_jsonl(train_path)}
    answers = [completion_of.get(p, p) for p in emb_predicted]
    results = compare(
        session,
        valid_rows,
        {f"base {session.chat_model}": session.chat_model,
         f"fine-tuned {session.chat_model}": job.fine_tuned_model},
        answers,
    )  # fmt: skip
    table = Table(title="fine-tune or embeddings? (an eval over the held-out tickets)")
    for column in ("contender", "correct", "accuracy", "report"):
        table.add_column(column)
    for r in results:
        table.add_row(r.name, f"{r.passed}/{r.total}", f"{r.accuracy:.3f}", r.report_url)
    session.console.print(table)
    session.results["classification"]["base accuracy"] = round(results[0].accuracy, 3)
    session.results["classification"]["fine-tuned accuracy"] = round(results[1].accuracy, 3)
