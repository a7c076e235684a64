"""The dashboard's own endpoints, under /v1/dashboard: what the OpenAI API does not say.

Everything else the dashboard shows comes from the OpenAI-shaped /v1 API with the
signed-in key, so a page sees exactly what that key's project may see. These two
answer behind the same key:

    GET /v1/dashboard/models                    the project's models with their kind
                                                (chat / embedding) and base
    GET /v1/dashboard/files/{file_id}/report    a fine-tuning file's validation report,
                                                token statistics and loss-mask preview
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.routing import Match

from tunelab.api.deps import CatalogDep, ProjectDep, ReportsDep, RuntimeDep, SettingsDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.data.report import FileReport
from tunelab.data.stats import TRAINING_TOKENS_PER_SECOND, percentile
from tunelab.errors import InvalidRequest

router = APIRouter(route_class=ApiRoute, prefix="/dashboard")

MAX_PREVIEW = 20
# APIs that a page needs and that this server may not have yet: the page says so
# instead of failing.
OPTIONAL_APIS = {"evals": "/v1/evals", "batches": "/v1/batches"}


class Session(BaseModel):
    object: Literal["dashboard.session"] = "dashboard.session"
    project: str
    auth_required: bool  # False on a server without keys: every request is project "default"
    apis: list[str]  # the optional APIs (evals, batches) this server has


class DashboardModel(BaseModel):
    id: str
    kind: Literal["chat", "embedding"]
    base_model: str
    # "base" for a registry model; "lora" / "full" for this project's fine-tunes.
    fine_tune: Literal["base", "lora", "full"]
    fine_tunable: bool
    created: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DashboardModel]


class ReportProblem(BaseModel):
    line: int | None
    example: int | None
    message_index: int | None
    field: str | None
    message: str


class ReportValidation(BaseModel):
    ok: bool
    format: str | None
    n_examples: int
    n_lines: int
    encoding: str | None
    problem_count: int
    problems: list[ReportProblem]
    too_few: bool
    summary: str


class Spread(BaseModel):
    min: int
    mean: float
    p90: int
    max: int


class ReportStats(BaseModel):
    n_examples: int
    sampled: int  # examples tokenized (an evenly spaced sample above 2,000)
    tokens_per_example: Spread
    messages_per_example: Spread | None
    trained_tokens: int
    total_tokens: int
    n_truncated: int
    context: int
    n_epochs: int  # what n_epochs="auto" resolves to
    billed_tokens: int
    estimated_seconds: float
    tokens_per_second: int  # the throughput the estimate assumes


class Segment(BaseModel):
    text: str
    trained: bool


class PreviewExample(BaseModel):
    line: int
    segments: list[Segment]


class FileReportOut(BaseModel):
    object: Literal["dashboard.file_report"] = "dashboard.file_report"
    file_id: str
    model: str
    validation: ReportValidation
    stats: ReportStats | None
    preview: list[PreviewExample]


def _spread(values: list[int]) -> Spread | None:
    if not values:
        return None
    return Spread(
        min=values[0],
        mean=round(sum(values) / len(values), 1),
        p90=percentile(values, 0.9),
        max=values[-1],
    )


def report_to_wire(file_id: str, model: str, report: FileReport) -> FileReportOut:
    v = report.validation
    stats = None
    if report.stats is not None:
        s = report.stats
        spread = _spread(s.tokens)
        assert spread is not None  # a report has stats only when examples were read
        stats = ReportStats(
            n_examples=s.n_examples,
            sampled=len(s.tokens),
            tokens_per_example=spread,
            messages_per_example=_spread(s.messages),
            trained_tokens=round(s.trained * s.scale),
            total_tokens=round(sum(s.tokens) * s.scale),
            n_truncated=s.n_truncated,
            context=s.context,
            n_epochs=s.n_epochs,
            billed_tokens=s.billed_tokens,
            estimated_seconds=round(s.est_seconds, 1),
            tokens_per_second=TRAINING_TOKENS_PER_SECOND,
        )
    return FileReportOut(
        file_id=file_id,
        model=model,
        validation=ReportValidation(
            ok=v.ok,
            format=v.format,
            n_examples=v.n_examples,
            n_lines=v.n_lines,
            encoding=v.encoding,
            problem_count=v.problem_count,
            problems=[
                ReportProblem(
                    line=p.line,
                    example=p.example,
                    message_index=p.message_index,
                    field=p.field,
                    message=p.message,
                )
                for p in v.problems
            ],
            too_few=v.too_few,
            summary=v.summary(),
        ),
        stats=stats,
        preview=[
            PreviewExample(
                line=ex.line,
                segments=[Segment(text=text, trained=trained) for text, trained in ex.segments],
            )
            for ex in report.preview
        ],
    )


@router.get("/session")
def session(request: Request, project: ProjectDep, rt: RuntimeDep) -> Session:
    return Session(
        project=project,
        auth_required=rt.keys.any_configured(),
        apis=[name for name, path in OPTIONAL_APIS.items() if _routed(request, path)],
    )


def _routed(request: Request, path: str) -> bool:
    """Whether the app has a GET route for `path` (asked the way a request is routed)."""
    scope = {**request.scope, "path": path, "method": "GET", "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.routes)


@router.get("/models")
def list_models(catalog: CatalogDep, project: ProjectDep) -> ModelList:
    return ModelList(
        data=[
            DashboardModel(
                id=m.id,
                kind=m.base.kind,
                base_model=m.base.id,
                fine_tune=m.kind,
                fine_tunable=m.base.fine_tunable,
                created=m.created,
            )
            for m in catalog.list(project)
        ]
    )


@router.get("/files/{file_id}/report")
def file_report(
    file_id: str,
    reports: ReportsDep,
    settings: SettingsDep,
    project: ProjectDep,
    model: str | None = None,
    preview: Annotated[int, Query()] = 3,
) -> FileReportOut:
    if not 0 <= preview <= MAX_PREVIEW:
        raise InvalidRequest(
            f"preview must be between 0 and {MAX_PREVIEW} examples.", param="preview"
        )
    chosen = model or settings.default_chat_model
    report = reports.report(project, file_id, chosen, preview=preview)
    return report_to_wire(file_id, chosen, report)
