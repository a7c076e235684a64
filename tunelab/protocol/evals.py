"""Wire shapes of /v1/evals (contract-2 §15): requests and responses, no logic.

Requests keep their nested parts as plain JSON (`dict`): the evals service checks
them field by field so that every refusal names the exact path
(`testing_criteria[1].evaluation_metric`), which pydantic's unions cannot do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EvalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]
    name: str | None = None
    metadata: dict[str, Any] | None = None


class EvalUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    metadata: dict[str, Any] | None = None


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_source: dict[str, Any]
    name: str | None = None
    metadata: dict[str, Any] | None = None


class Eval(BaseModel):
    id: str
    object: Literal["eval"] = "eval"
    created_at: int
    name: str
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]
    metadata: dict[str, str] | None


class EvalDeleted(BaseModel):
    object: Literal["eval.deleted"] = "eval.deleted"
    deleted: bool = True
    eval_id: str


class ResultCounts(BaseModel):
    total: int = 0
    errored: int = 0
    failed: int = 0
    passed: int = 0


class ModelUsage(BaseModel):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = 0


class CriterionResult(BaseModel):
    testing_criteria: str
    passed: int
    failed: int


class RunError(BaseModel):
    code: str
    message: str


class Progress(BaseModel):
    """tunelab extension: items done so far out of all the run's items."""

    completed: int
    total: int


class EvalRun(BaseModel):
    id: str
    object: Literal["eval.run"] = "eval.run"
    eval_id: str
    name: str
    model: str | None
    created_at: int
    status: str
    data_source: dict[str, Any]
    metadata: dict[str, str] = Field(default_factory=dict)
    error: RunError | None
    report_url: str
    result_counts: ResultCounts
    per_model_usage: list[ModelUsage] | None
    per_testing_criteria_results: list[CriterionResult] | None
    progress: Progress


class RunDeleted(BaseModel):
    object: Literal["eval.run.deleted"] = "eval.run.deleted"
    deleted: bool = True
    run_id: str


class OutputItem(BaseModel):
    id: str
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    created_at: int
    run_id: str
    eval_id: str
    status: str
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[dict[str, Any]]
    sample: dict[str, Any] | None
