"""The legacy fine-tunes API (contract §3.1) as a view over today's jobs.

A legacy fine-tune *is* a fine-tuning job: `ft-X` here is `ftjob-X` in
/v1/fine_tuning/jobs, so a job created either way shows in both APIs. Legacy
hyperparameters are top-level fields; those tunelab trains with are mapped,
the classification-metrics ones are refused by name. Events are the job's
events, oldest first, plus the closing messages the legacy CLI prints
(`Uploaded model: …`, `Fine-tune succeeded`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from tunelab.errors import InvalidRequest, NotFound
from tunelab.files import FileStore, file_object
from tunelab.jobs.service import JobService
from tunelab.protocol import fine_tuning as jobs_wire
from tunelab.protocol.files import FileObject
from tunelab.protocol.legacy import FineTune, FineTuneCreate, FineTuneEvent

LEGACY_PREFIX, JOB_PREFIX = "ft-", "ftjob-"
DEFAULT_EPOCHS = 4  # the legacy API's default
STATUS = {"validating_files": "pending", "queued": "pending", "paused": "pending"}
TERMINAL = ("succeeded", "failed", "cancelled")
# tunelab trains on the completion only: prompt_loss_weight 0. OpenAI's default
# (0.01) is that in practice; a larger weight cannot be honoured.
MAX_PROMPT_LOSS_WEIGHT = 0.01
_CLASSIFICATION = (
    "classification_n_classes",
    "classification_positive_class",
    "classification_betas",
)


def legacy_id(job_id: str) -> str:
    return LEGACY_PREFIX + job_id.removeprefix(JOB_PREFIX)


def job_id(fine_tune_id: str) -> str:
    if fine_tune_id.startswith(JOB_PREFIX):
        return fine_tune_id
    return JOB_PREFIX + fine_tune_id.removeprefix(LEGACY_PREFIX)


def _refuse_unsupported(req: FineTuneCreate) -> None:
    if req.compute_classification_metrics:
        raise InvalidRequest(
            "compute_classification_metrics is not supported: tunelab's results file reports "
            "training and validation loss and token accuracy. Remove it.",
            param="compute_classification_metrics",
        )
    for name in _CLASSIFICATION:
        if getattr(req, name) is not None:
            raise InvalidRequest(
                f"{name} only applies with compute_classification_metrics, which tunelab does "
                "not support. Remove it.",
                param=name,
            )
    if req.prompt_loss_weight is not None and not (
        0 <= req.prompt_loss_weight <= MAX_PROMPT_LOSS_WEIGHT
    ):
        raise InvalidRequest(
            "tunelab trains on the completion only (prompt_loss_weight 0); values from 0 to "
            f"{MAX_PROMPT_LOSS_WEIGHT} are accepted.",
            param="prompt_loss_weight",
        )
    if req.hyperparameters is not None and req.n_epochs is not None:
        raise InvalidRequest(
            "Give n_epochs either at the top level or in hyperparameters, not both.",
            param="hyperparameters.n_epochs",
        )


class LegacyFineTunes:
    def __init__(self, jobs: JobService, files: FileStore, *, poll_s: float = 1.0) -> None:
        self.jobs = jobs
        self.files = files
        self.poll_s = poll_s

    def create(self, project: str, req: FineTuneCreate) -> FineTune:
        _refuse_unsupported(req)
        epochs = req.n_epochs
        if epochs is None and req.hyperparameters is not None:
            epochs = req.hyperparameters.n_epochs
        hp = jobs_wire.Hyperparameters(
            n_epochs=epochs if epochs is not None else DEFAULT_EPOCHS,
            batch_size=req.batch_size if req.batch_size is not None else "auto",
            learning_rate_multiplier=req.learning_rate_multiplier
            if req.learning_rate_multiplier is not None
            else "auto",
        )
        create = jobs_wire.JobCreate(
            model=req.model,
            training_file=req.training_file,
            validation_file=req.validation_file,
            hyperparameters=hp,
            suffix=req.suffix,
        )
        try:
            job = self.jobs.create(project, create)
        except InvalidRequest as e:  # name the legacy field, not the new API's
            if e.param and e.param.startswith("hyperparameters."):
                e.param = e.param.removeprefix("hyperparameters.")
            raise
        return self._view(project, job)

    def get(self, project: str, fine_tune_id: str) -> FineTune:
        return self._view(project, self._job(project, fine_tune_id))

    def list_all(self, project: str) -> list[FineTune]:
        out, after = [], None
        while True:
            page, more = self.jobs.list(project, after=after, limit=100, metadata=None)
            out.extend(page)
            if not more or not page:
                break
            after = page[-1].id
        return [self._view(project, j, with_events=False) for j in reversed(out)]

    def cancel(self, project: str, fine_tune_id: str) -> FineTune:
        job = self._job(project, fine_tune_id)
        return self._view(project, self.jobs.cancel(project, job.id))

    def events(self, project: str, fine_tune_id: str) -> list[FineTuneEvent]:
        return self._events(project, self._job(project, fine_tune_id))

    def follow(
        self, project: str, fine_tune_id: str, *, gone: Callable[[], bool] = lambda: False
    ) -> Iterator[FineTuneEvent]:
        """Past events, then new ones as they happen, until the job finishes
        (`fine_tunes.follow`). Stops early when `gone()` says the client left.

        An unknown id raises NotFound here, when called, not on the first `next()`:
        a stream must be refused before its response has started."""
        return self._follow(project, self._job(project, fine_tune_id), gone)

    def _follow(
        self, project: str, job: jobs_wire.Job, gone: Callable[[], bool]
    ) -> Iterator[FineTuneEvent]:
        sent = 0
        while True:
            events = self._events(project, job)
            yield from events[sent:]
            sent = len(events)
            if job.status in TERMINAL or gone():
                return
            time.sleep(self.poll_s)
            job = self.jobs.get(project, job.id)

    # -- the view

    def _job(self, project: str, fine_tune_id: str) -> jobs_wire.Job:
        try:
            return self.jobs.get(project, job_id(fine_tune_id))
        except NotFound:
            raise NotFound(
                f"No fine-tune job found with id '{fine_tune_id}'.", param="fine_tune_id"
            ) from None

    def _events(self, project: str, job: jobs_wire.Job) -> list[FineTuneEvent]:
        raw: list[jobs_wire.JobEvent] = []
        after = None
        while True:
            page, more = self.jobs.events(project, job.id, after=after, limit=1000)
            raw.extend(page)
            if not more or not page:
                break
            after = raw[-1].id
        events = [
            FineTuneEvent(created_at=e.created_at, level=e.level, message=e.message)
            for e in reversed(raw)  # the jobs API lists newest first
        ]
        if job.status in TERMINAL:
            at = job.finished_at or (events[-1].created_at if events else job.created_at)
            closing = []
            if job.fine_tuned_model:
                closing.append(f"Uploaded model: {job.fine_tuned_model}")
            closing += [f"Uploaded result file: {f}" for f in job.result_files]
            closing.append(f"Fine-tune {job.status}")
            level = "error" if job.status == "failed" else "info"
            events += [FineTuneEvent(created_at=at, level=level, message=m) for m in closing]
        return events

    def _files(self, project: str, ids: list[str | None]) -> list[FileObject]:
        out = []
        for file_id in ids:
            if file_id is None:
                continue
            try:
                out.append(file_object(self.files.get(project, file_id)))
            except NotFound:  # deleted since: the legacy shape has no place for a bare id
                continue
        return out

    def _view(self, project: str, job: jobs_wire.Job, *, with_events: bool = True) -> FineTune:
        hp = job.hyperparameters
        if hp is None:  # only supervised jobs carry the top-level field (contract §14.2)
            assert job.method.dpo is not None
            hp = job.method.dpo.hyperparameters
        events = self._events(project, job) if with_events else []
        updated = max([job.created_at, job.finished_at or 0, *(e.created_at for e in events)])
        return FineTune(
            id=legacy_id(job.id),
            created_at=job.created_at,
            updated_at=updated,
            model=job.model,
            fine_tuned_model=job.fine_tuned_model,
            organization_id=job.organization_id,
            status=STATUS.get(job.status, job.status),
            hyperparams={
                "n_epochs": hp.n_epochs,
                "batch_size": hp.batch_size,
                "learning_rate_multiplier": hp.learning_rate_multiplier,
                "prompt_loss_weight": 0.0,
            },
            training_files=self._files(project, [job.training_file]),
            validation_files=self._files(project, [job.validation_file]),
            result_files=self._files(project, list(job.result_files)),
            events=events,
        )
