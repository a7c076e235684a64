"""Wire shapes of /v1/fine_tuning/jobs (contract §2): requests and responses, no logic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    """As requested. Numbers are checked by the jobs service so errors name the field."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: Any = "auto"
    batch_size: Any = "auto"
    learning_rate_multiplier: Any = "auto"
    # tunelab extension: "lora" (default) or "full" fine-tuning
    method: Any = "lora"


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters | None = None


class DpoHyperparameters(Hyperparameters):
    """DPO's: the supervised ones plus beta ("auto" or 0 < beta <= 2)."""

    beta: Any = "auto"


class DpoMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: DpoHyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = None
    seed: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None


class JobError(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None


class ResolvedHyperparameters(BaseModel):
    n_epochs: int | Auto
    batch_size: int | Auto
    learning_rate_multiplier: float | Auto


class SupervisedOut(BaseModel):
    hyperparameters: ResolvedHyperparameters


class DpoHyperparametersOut(ResolvedHyperparameters):
    beta: float | Auto


class DpoOut(BaseModel):
    hyperparameters: DpoHyperparametersOut


class MethodOut(BaseModel):
    type: Literal["supervised", "dpo"] = "supervised"
    supervised: SupervisedOut | None = None
    dpo: DpoOut | None = None


class Job(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    model: str
    training_file: str
    validation_file: str | None
    status: str
    # Mirrors method.supervised.hyperparameters; null for other methods (contract §14.2).
    hyperparameters: ResolvedHyperparameters | None
    method: MethodOut
    fine_tuned_model: str | None
    finished_at: int | None
    trained_tokens: int | None
    result_files: list[str]
    error: JobError | None
    seed: int
    organization_id: str
    estimated_finish: int | None
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] | None
    user_provided_suffix: str | None = None
    # tunelab extension: "lora" | "full"
    training_method: str = "lora"


class JobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any] | None


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    # tunelab: the label accuracy of a classification validation set, and DPO's
    # validation reward margin and accuracy, measured at the checkpoint's step.
    classification_accuracy: float | None = None
    classification_weighted_f1: float | None = None
    full_valid_reward_margin: float | None = None
    full_valid_reward_accuracy: float | None = None


class Checkpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics
