"""The jobs service: create, read and steer fine-tuning jobs (the API's side of the queue).

Creating a job resolves the requested model once (a base model, or a project's
fine-tune to continue) and stores the result on the job; nothing resolves it again.
The API only moves jobs between states, through the transition table of
`tunelab.jobs.states`; a worker (tunelab.jobs.worker) picks up what changed: it
validates files, claims queued jobs, and signals the training process when a running
job is cancelled or paused. Every write is one short transaction, so the API stays
responsive while workers write events.
"""

from __future__ import annotations

import builtins
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunelab.clock import SYSTEM_CLOCK, Clock
from tunelab.db.base import Database
from tunelab.db.pagination import check_limit, paginate
from tunelab.db.tables import FineTunedModelRow
from tunelab.errors import InvalidRequest, NotFound
from tunelab.files import FileStore
from tunelab.ids import new_id
from tunelab.jobs import requests, states
from tunelab.jobs.eventlog import add_event
from tunelab.jobs.tables import Job, JobEvent
from tunelab.models.catalog import Catalog, ResolvedModel
from tunelab.models.registry import Registry
from tunelab.protocol import fine_tuning as wire


class JobService:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        catalog: Catalog,
        files: FileStore,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.registry = registry
        self.catalog = catalog
        self.files = files
        self.clock = clock

    # -- create

    def create(self, project: str, req: wire.JobCreate) -> wire.Job:
        hp = requests.hyperparameters(req)
        suffix = requests.suffix(req.suffix)
        metadata = requests.metadata(req.metadata)
        seed = requests.seed(req.seed, secrets.randbelow(2**31))
        resolved = self._check_model(project, req.model, hp.method)
        self._check_file(project, req.training_file, "training_file")
        if req.validation_file is not None:
            self._check_file(project, req.validation_file, "validation_file")
        at = self.clock.time()
        # An OpenAI name (gpt-4o-mini-2024-07-18, davinci) trains the model it stands
        # for; the job reports that model, so nobody mistakes what was trained.
        aliased = self.registry.is_alias(req.model)
        job = Job(
            id=new_id("ftjob-"),
            project=project,
            created_at=at,
            status="validating_files",
            model=resolved.base.id if aliased else req.model,
            base_model=resolved.base.id,
            parent_kind=None if resolved.kind == "base" else resolved.kind,
            # Relative to the models dir: the worker finds (or fetches) it under its own.
            parent_path=None if resolved.path is None else self.catalog.weights.ref(resolved.path),
            training_file=req.training_file,
            validation_file=req.validation_file,
            hyperparameters=hp.as_dict(),
            training_method=hp.method,
            objective=hp.objective,
            suffix=suffix,
            seed=seed,
            metadata_=metadata,
            result_files=[],
            attempts=0,
        )
        with self.db.begin() as s:
            s.add(job)
            s.flush()
            add_event(s, job, f"Created fine-tuning job: {job.id}", at=at)
            if aliased:
                add_event(
                    s,
                    job,
                    f"Model {req.model} resolves to {resolved.base.id}: "
                    f"training {resolved.base.id}",
                    at=at,
                )
        return to_wire(job)

    def _check_model(self, project: str, model: str, method: str) -> ResolvedModel:
        """The base model, or the project's ft: model to continue, that `model` names."""
        tunable = ", ".join(s.id for s in self.registry.all() if s.fine_tunable)
        unavailable = InvalidRequest(
            f"Model {model} is not available for fine-tuning or does not exist. "
            f"Fine-tunable models: {tunable}.",
            param="model",
            code="model_not_available",
        )
        try:
            resolved = self.catalog.resolve(project, model)
        except NotFound:
            raise unavailable from None
        if resolved.base.kind != "chat" or not resolved.base.fine_tunable:
            raise unavailable
        if resolved.kind != "base" and resolved.kind != method:
            raise InvalidRequest(
                f"{model} is a {resolved.kind} fine-tune; "
                f"continue it with method '{resolved.kind}'.",
                param="method",
                code="invalid_value",
            )
        return resolved

    def _check_file(self, project: str, file_id: str, param: str) -> None:
        try:
            row = self.files.get(project, file_id)
        except NotFound:
            raise InvalidRequest(
                f"invalid {param}: {file_id}. Upload it with purpose 'fine-tune' first "
                "(client.files.create(file=..., purpose='fine-tune')).",
                param=param,
                code="invalid_file",
            ) from None
        if row.purpose != "fine-tune":
            raise InvalidRequest(
                f"invalid {param}: {file_id} has purpose '{row.purpose}', but fine-tuning "
                "needs a file uploaded with purpose 'fine-tune'.",
                param=param,
                code="invalid_file_purpose",
            )

    # -- read

    def _get(self, s: Session, project: str, job_id: str) -> Job:
        job = s.get(Job, job_id)
        if job is None or job.project != project:
            raise NotFound(
                f"No fine-tuning job found with id '{job_id}'.", param="fine_tuning_job_id"
            )
        return job

    def get(self, project: str, job_id: str) -> wire.Job:
        with self.db() as s:
            return to_wire(self._get(s, project, job_id))

    def list(
        self, project: str, *, after: str | None, limit: int, metadata: dict[str, str] | None
    ) -> tuple[list[wire.Job], bool]:
        check_limit(limit, 100)
        stmt = select(Job).where(Job.project == project)
        with self.db() as s:
            if metadata is None:
                rows, more = paginate(s, stmt, Job, after=after, limit=limit)
                return [to_wire(j) for j in rows], more
            # JSON filtering differs per database; a project's job list is small.
            rows, _ = paginate(s, stmt, Job, after=after, limit=10_000)
            match = [j for j in rows if _metadata_matches(j.metadata_, metadata)]
            return [to_wire(j) for j in match[:limit]], len(match) > limit

    def events(
        self, project: str, job_id: str, *, after: str | None, limit: int
    ) -> tuple[builtins.list[wire.JobEvent], bool]:
        check_limit(limit, 1000)
        with self.db() as s:
            self._get(s, project, job_id)
            stmt = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq.desc())
            if after:
                seq = s.execute(
                    select(JobEvent.seq).where(JobEvent.id == after, JobEvent.job_id == job_id)
                ).scalar_one_or_none()
                if seq is None:
                    raise InvalidRequest(f"No event with id '{after}' in this job.", param="after")
                stmt = stmt.where(JobEvent.seq < seq)
            rows = list(s.execute(stmt.limit(limit + 1)).scalars())
        return [event_to_wire(e) for e in rows[:limit]], len(rows) > limit

    def checkpoints(
        self, project: str, job_id: str, *, after: str | None, limit: int
    ) -> tuple[builtins.list[wire.Checkpoint], bool]:
        check_limit(limit, 100)
        with self.db() as s:
            self._get(s, project, job_id)
        rows, more = self.catalog.job_checkpoints(project, job_id, after=after, limit=limit)
        return [checkpoint_to_wire(c) for c in rows], more

    # -- steer

    def _move(self, project: str, job_id: str, t: states.Transition, message: str) -> wire.Job:
        with self.db.begin() as s:
            job = self._get(s, project, job_id)
            moved = states.apply(s, job_id, t, now=self.clock.time(), notes=[states.Note(message)])
            if moved is None:
                current = s.get(Job, job_id, populate_existing=True)
                status = current.status if current is not None else job.status
                what = "finished" if status in states.TERMINAL else status
                raise InvalidRequest(
                    f"Job {job_id} is {what} ({status}); it can be {_verb(t.target)} only when "
                    f"{' or '.join(t.source)}.",
                    param="fine_tuning_job_id",
                    code="invalid_job_status",
                )
            return to_wire(moved)

    def cancel(self, project: str, job_id: str) -> wire.Job:
        return self._move(project, job_id, states.CANCEL, "Job cancelled")

    def pause(self, project: str, job_id: str) -> wire.Job:
        return self._move(project, job_id, states.PAUSE, "Job paused")

    def resume(self, project: str, job_id: str) -> wire.Job:
        return self._move(project, job_id, states.RESUME, "Job resumed, moving job to queued state")


def _verb(status: str) -> str:
    return {"cancelled": "cancelled", "paused": "paused", "queued": "resumed"}[status]


def _metadata_matches(have: dict[str, str] | None, want: dict[str, str]) -> bool:
    return all((have or {}).get(k) == v for k, v in want.items())


def _int(t: float | None) -> int | None:
    return int(t) if t is not None else None


def to_wire(job: Job) -> wire.Job:
    hp: wire.ResolvedHyperparameters | None = None
    if job.objective == "dpo":
        method = wire.MethodOut(
            type="dpo",
            dpo=wire.DpoOut(hyperparameters=wire.DpoHyperparametersOut(**job.hyperparameters)),
        )
    else:
        hp = wire.ResolvedHyperparameters(**job.hyperparameters)
        method = wire.MethodOut(supervised=wire.SupervisedOut(hyperparameters=hp))
    error = wire.JobError(**job.error) if job.error else None
    return wire.Job(
        id=job.id,
        created_at=int(job.created_at),
        model=job.model,
        training_file=job.training_file,
        validation_file=job.validation_file,
        status=job.status,
        hyperparameters=hp,
        method=method,
        fine_tuned_model=job.fine_tuned_model,
        finished_at=_int(job.finished_at),
        trained_tokens=job.trained_tokens,
        result_files=list(job.result_files or []),
        error=error,
        seed=job.seed,
        organization_id=f"org-{job.project}",
        estimated_finish=_int(job.estimated_finish) if job.status == "running" else None,
        metadata=job.metadata_,
        user_provided_suffix=job.suffix,
        training_method=job.training_method,
    )


def event_to_wire(e: JobEvent) -> wire.JobEvent:
    return wire.JobEvent(
        id=e.id,
        created_at=int(e.created_at),
        level=e.level,
        message=e.message,
        type=e.type,
        data=e.data,
    )


def checkpoint_to_wire(c: FineTunedModelRow) -> wire.Checkpoint:
    assert c.checkpoint_id is not None and c.job_id is not None and c.step is not None
    metrics = c.metrics or {}
    return wire.Checkpoint(
        id=c.checkpoint_id,
        created_at=c.created_at,
        fine_tuned_model_checkpoint=c.id,
        fine_tuning_job_id=c.job_id,
        step_number=c.step,
        metrics=wire.CheckpointMetrics(
            **{k: v for k, v in metrics.items() if k in wire.CheckpointMetrics.model_fields}
        ),
    )
