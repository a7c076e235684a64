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

from sqlalchemy import select

from tunelab.db.base import Database
from tunelab.jobs.tables import JobEvent
from tunelab.training.events import StepMetrics

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


def metrics_message(m: StepMetrics) -> str:
    text = f"Step {m.step}/{m.total_steps}: training loss={m.train_loss:.2f}"
    if m.valid_loss is not None:
        text += f", validation loss={m.valid_loss:.2f}"
    if m.full_valid_loss is not None:
        text += f", full validation loss={m.full_valid_loss:.2f}"
    if m.classification_accuracy is not None:
        text += f", classification accuracy={m.classification_accuracy:.2f}"
        if m.classification_weighted_f1 is not None:
            text += f", weighted F1={m.classification_weighted_f1:.2f}"
    return text
