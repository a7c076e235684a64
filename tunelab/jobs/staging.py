"""Getting a job ready to train: validate its files, resolve "auto", write its TrainConfig.

Validation uses the same validator as `tunelab prepare-data` and file upload, so a
file that passes there passes here. "auto" hyperparameters are resolved once the
data is known (rules in tunelab.training.auto: the number of examples, whether the
answers are labels and how balanced; documented in docs/fine-tuning.md) and stored on
the job with that number, so the job shows the numbers it trains with; the reasons
for each choice become job events. A DPO job needs preference pairs, a supervised
job anything else. The config uses the model the job's creation resolved
(stored on the job), never the catalog's current answer for its name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.validation import MIN_EXAMPLES, validate_file
from tunelab.errors import NotFound
from tunelab.files import FileStore
from tunelab.jobs.tables import Job
from tunelab.models.catalog import Catalog
from tunelab.settings import Settings
from tunelab.training import auto
from tunelab.training.config import CPU_MAX_LENGTH, TrainConfig, steps_per_epoch
from tunelab.training.events import CONFIG_FILE, CONTROL_FILE, EVENTS_FILE


@dataclass(frozen=True)
class Failure:
    code: str
    param: str
    message: str

    def as_dict(self) -> dict[str, str | None]:
        """The job's `error` object (contract §2.10)."""
        return {"code": self.code, "message": self.message, "param": self.param}


@dataclass
class Verdict:
    started_message: str
    hyperparameters: dict[str, Any]
    n_examples: int | None = None
    error: Failure | None = None
    reasons: list[str] = field(default_factory=list)  # why "auto" chose each value


def _file_path(files: FileStore, project: str, file_id: str) -> Path | None:
    try:
        return files.path(files.get(project, file_id))
    except NotFound:
        return None


def validate(files: FileStore, job: Job) -> Verdict:
    started = f"Validating training file: {job.training_file}"
    if job.validation_file:
        started += f" and validation file: {job.validation_file}"
    hp = dict(job.hyperparameters)

    def fail(code: str, param: str, message: str) -> Verdict:
        return Verdict(started, hp, error=Failure(code, param, message))

    train = _file_path(files, job.project, job.training_file)
    if train is None:
        return fail(
            "invalid_training_file",
            "training_file",
            f"Training file {job.training_file} no longer exists.",
        )
    report = validate_file(train)
    if not report.ok:
        return fail(
            "invalid_training_file",
            "training_file",
            f"The job failed due to an invalid training file. {report.summary()}",
        )
    if report.too_few:
        return fail(
            "invalid_n_examples",
            "training_file",
            f"Training file has {report.n_examples} example(s), "
            f"but must have at least {MIN_EXAMPLES} examples",
        )
    mismatch = _format_mismatch(job.objective, report.format)
    if mismatch:
        return fail("invalid_training_file", "training_file", mismatch)
    if job.validation_file:
        valid = _file_path(files, job.project, job.validation_file)
        vreport = validate_file(valid) if valid else None
        if vreport is None or not vreport.ok:
            detail = (
                vreport.summary() if vreport else f"File {job.validation_file} no longer exists."
            )
            return fail(
                "invalid_validation_file",
                "validation_file",
                f"The job failed due to an invalid validation file. {detail}",
            )
        mismatch = _format_mismatch(job.objective, vreport.format)
        if mismatch:
            return fail("invalid_validation_file", "validation_file", mismatch)

    chosen = auto.choose(
        auto.profile(train), hp, method=job.objective, training=job.training_method
    )
    return Verdict(started, chosen.values, n_examples=report.n_examples, reasons=chosen.reasons)


def _format_mismatch(objective: str, fmt: str | None) -> str | None:
    """Why a file of format `fmt` cannot train `objective`, or None."""
    if objective == "dpo" and fmt != "preference":
        return (
            "A DPO job needs preference pairs (input, preferred_output, "
            f"non_preferred_output); this file holds {fmt or 'no examples'}. "
            "Train it with method 'supervised', or upload preference pairs."
        )
    if objective != "dpo" and fmt == "preference":
        return (
            "This file holds preference pairs; train it with "
            'method={"type": "dpo"} (supervised fine-tuning needs examples with answers).'
        )
    return None


def write_config(
    settings: Settings, catalog: Catalog, files: FileStore, job: Job, job_dir: Path
) -> TrainConfig:
    """The job's TrainConfig in job_dir/config.json; stale events and control files moved aside."""
    base = catalog.registry.find(job.base_model)
    if base is None:
        raise LookupError(f"the base model {job.base_model} is no longer in the model registry")
    source, gguf, adapter = base.source, base.gguf_file, None
    if job.parent_kind is not None:
        # Continuing a fine-tune: its weights as they were when the job was created
        # (fetched from the blob store when another machine trained them).
        parent = (
            None
            if job.parent_path is None
            else catalog.weights.local(catalog.weights.path(job.parent_path))
        )
        if parent is None or not parent.exists():
            raise FileNotFoundError(f"the weights of {job.model} no longer exist")
        if job.parent_kind == "lora":
            adapter = str(parent)
        else:
            source, gguf = str(parent), None
    train = _file_path(files, job.project, job.training_file)
    if train is None:
        raise FileNotFoundError(f"training file {job.training_file} no longer exists")
    valid = _file_path(files, job.project, job.validation_file) if job.validation_file else None
    hp = job.hyperparameters
    if job.n_examples is None:
        raise ValueError(f"job {job.id} has not been validated")
    total_steps = steps_per_epoch(job.n_examples, hp["batch_size"]) * hp["n_epochs"]
    on_cpu = settings.device == "cpu" or (settings.device == "auto" and not _cuda_visible())
    max_length = base.context_length or CPU_MAX_LENGTH
    if on_cpu:
        max_length = min(max_length, CPU_MAX_LENGTH)
    cfg = TrainConfig(
        base_model=base.id,
        model_source=source,
        gguf_file=gguf,
        model_options=dict(base.options),
        cache_dir=str(settings.model_cache_dir),
        init_adapter=adapter,
        training_file=str(train),
        validation_file=str(valid) if valid else None,
        output_dir=str(settings.models_dir / job.id),
        method=job.training_method,
        n_epochs=hp["n_epochs"],
        batch_size=hp["batch_size"],
        learning_rate_multiplier=float(hp["learning_rate_multiplier"]),
        objective=job.objective,
        beta=float(hp.get("beta", auto.DPO_BETA)),
        seed=job.seed,
        max_length=max_length,
        device=settings.device,
        bf16=settings.training_bf16,
        blob_url=settings.blob_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        blob_cache_dir=str(settings.blob_cache_dir),
        eval_interval=max(1, min(50, total_steps // 10)),
    )
    job_dir.mkdir(parents=True, exist_ok=True)
    events = job_dir / EVENTS_FILE
    if events.exists():  # a previous attempt's events were copied already
        os.replace(events, job_dir / f"events.{int(events.stat().st_mtime * 1000)}.jsonl")
    (job_dir / CONTROL_FILE).unlink(missing_ok=True)
    cfg.save(job_dir / CONFIG_FILE)
    return cfg


def _cuda_visible() -> bool:
    # Without importing torch in the server: the training process resolves "auto"
    # itself; this only picks the CPU length cap.
    return Path("/proc/driver/nvidia/version").exists()
