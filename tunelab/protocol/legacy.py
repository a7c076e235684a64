"""Wire shapes of the legacy /v1/fine-tunes API (contract §3.1) and /v1/engines (§18.2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tunelab.protocol.files import FileObject


class LegacyHyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: int | None = None


class FineTuneCreate(BaseModel):
    # Every legacy field is named here; ones tunelab cannot honour are refused by
    # tunelab.legacy.fine_tunes, and anything else is a 400 naming it.
    model_config = ConfigDict(extra="forbid")

    training_file: str
    validation_file: str | None = None
    model: str = "curie"
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    prompt_loss_weight: float | None = None
    compute_classification_metrics: bool | None = None
    classification_n_classes: int | None = None
    classification_positive_class: str | None = None
    classification_betas: list[float] | None = None
    suffix: str | None = None
    hyperparameters: LegacyHyperparameters | None = None


class FineTuneEvent(BaseModel):
    object: Literal["fine-tune-event"] = "fine-tune-event"
    created_at: int
    level: str
    message: str


class FineTune(BaseModel):
    id: str
    object: Literal["fine-tune"] = "fine-tune"
    created_at: int
    updated_at: int
    model: str
    fine_tuned_model: str | None
    organization_id: str
    status: str
    hyperparams: dict[str, Any]
    training_files: list[FileObject]
    validation_files: list[FileObject]
    result_files: list[FileObject]
    events: list[FineTuneEvent]


class Engine(BaseModel):
    id: str
    object: Literal["engine"] = "engine"
    owner: str
    ready: bool = True
    created: int | None = None
