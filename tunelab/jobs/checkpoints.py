"""A job's checkpoints in the catalog, under contract names (§2.6, §2.8).

    final model   ft:{base}:{project slug}:{suffix}:{id8}
    checkpoint    ft:{base}:{project slug}:{suffix}:{id8}:ckpt-step-{N}

Each name has its own random id8 (8 base62 characters, like OpenAI's), drawn when
the checkpoint is registered and redrawn by the catalog while the name is taken, so
jobs created at the same moment never share a name. The last checkpoint's name is
the job's `fine_tuned_model`.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.jobs import requests
from tunelab.jobs.tables import Job
from tunelab.models.catalog import Catalog


def model_name(job: Job, id8: str) -> str:
    """`ft:{base}:{project}:{suffix}:{id8}` (contract §2.8)."""
    return f"ft:{job.base_model}:{requests.slug(job.project) or 'default'}:{job.suffix or ''}:{id8}"


def register(
    catalog: Catalog,
    job: Job,
    *,
    step: int,
    path: Path,
    metrics: dict[str, float] | None,
    at: float,
    final: bool,
) -> str:
    """Make the job's checkpoint at `step` a callable model; its name."""

    def name(id8: str) -> str:
        return model_name(job, id8) if final else f"{model_name(job, id8)}:ckpt-step-{step}"

    return catalog.add_job_checkpoint(
        project=job.project,
        job_id=job.id,
        step=step,
        base_model=job.base_model,
        kind="full" if job.training_method == "full" else "lora",
        path=path,
        metrics=metrics,
        created_at=int(at),
        name=name,
    )
