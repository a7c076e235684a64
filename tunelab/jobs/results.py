"""Training metrics: the step events' message and data, and the results CSV.

The results CSV of a finished job (contract §2.7) has one row per step:

    step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy
    1,1.52347,0.0,,

Validation columns are empty on steps without a validation batch; values are
rounded to 5 decimals. Built from the job's metrics events, so it matches them.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select

from tunelab.db.base import Database
from tunelab.jobs.tables import JobEvent

COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
_SOURCE = {"train_accuracy": "train_mean_token_accuracy"}


def results_csv(db: Database, job_id: str) -> str:
    with db() as s:
        rows = s.execute(
            select(JobEvent.data)
            .where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
            .order_by(JobEvent.seq)
        ).scalars()
        by_step = {int(d["step"]): d for d in rows if d}  # a resumed step keeps its latest values
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for step in sorted(by_step):
        d = by_step[step]
        cells = [str(step)]
        for col in COLUMNS[1:]:
            v = d.get(_SOURCE.get(col, col))
            cells.append("" if v is None else f"{round(float(v), 5)}")
        writer.writerow(cells)
    return out.getvalue()


def metrics_data(ev: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "step",
        "total_steps",
        "train_loss",
        "train_mean_token_accuracy",
        "learning_rate",
        "valid_loss",
        "valid_mean_token_accuracy",
        "full_valid_loss",
        "full_valid_mean_token_accuracy",
        "classification_accuracy",
        "classification_weighted_f1",
    )
    return {k: ev[k] for k in keys if k in ev}


def metrics_message(ev: dict[str, Any]) -> str:
    text = f"Step {ev['step']}/{ev['total_steps']}: training loss={ev['train_loss']:.2f}"
    if "valid_loss" in ev:
        text += f", validation loss={ev['valid_loss']:.2f}"
    if "full_valid_loss" in ev:
        text += f", full validation loss={ev['full_valid_loss']:.2f}"
    if "classification_accuracy" in ev:
        text += (
            f", classification accuracy={ev['classification_accuracy']:.2f}"
            f", weighted F1={ev['classification_weighted_f1']:.2f}"
        )
    return text
