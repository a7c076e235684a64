"""The evals service: evals, their runs and output items, per project (the API's side).

Creating an eval checks its item schema and criteria; creating a run checks its
data source and every row against the schema and queues it. The runner
(`tunelab.evals.runner`) does the work in the background; cancelling goes through
the same state table (`tunelab.evals.states`) the runner uses, so a cancelled run
stops within one chunk of rows. Another project's eval, run or item is a 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tunelab.db.base import Database
from tunelab.db.pagination import check_limit, paginate
from tunelab.errors import InvalidRequest, NotFound
from tunelab.evals import states
from tunelab.evals.criteria import parse_criteria
from tunelab.evals.datasource import check_item_schema, parse_data_source
from tunelab.evals.tables import EvalOutputItemRow, EvalRow, EvalRunRow
from tunelab.evals.templates import uses_sample
from tunelab.files import FileStore
from tunelab.ids import new_id
from tunelab.inference.service import InferenceService
from tunelab.protocol import evals as wire

MAX_METADATA = 16


def _metadata(value: dict[str, Any] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA:
        raise InvalidRequest(f"metadata may have at most {MAX_METADATA} keys.", param="metadata")
    for k, v in value.items():
        if not isinstance(v, str) or len(k) > 64 or len(v) > 512:
            raise InvalidRequest(
                f"Invalid metadata[{k!r}]: keys are strings up to 64 characters, values "
                "strings up to 512.",
                param="metadata",
            )
    return dict(value)


def _sample_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "choices": {"type": "array"},
            "output_text": {"type": "string"},
            "output_json": {"type": "object"},
            "output_tools": {"type": "array"},
        },
        "required": ["model", "choices"],
    }


class EvalService:
    def __init__(
        self,
        db: Database,
        files: FileStore,
        inference: InferenceService,
        *,
        on_run_created: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.files = files
        self.inference = inference
        # Wakes the runner when one is running in this process.
        self.on_run_created = on_run_created

    # -- checks shared by evals and runs

    def check_model(self, project: str, model: str, param: str) -> None:
        try:
            self.inference.target(project, model, fetch=False)
        except (NotFound, InvalidRequest) as e:
            raise InvalidRequest(e.message, param=param, code="model_not_found") from None

    def read_file(self, project: str, file_id: str) -> str:
        param = "data_source.source.id"
        try:
            row = self.files.get(project, file_id)
        except NotFound:
            raise InvalidRequest(
                f"No file {file_id}. Upload the rows with purpose 'evals' first.", param=param
            ) from None
        if row.purpose != "evals":
            raise InvalidRequest(
                f"{file_id} has purpose '{row.purpose}'; eval rows are uploaded with "
                "purpose 'evals'.",
                param=param,
            )
        try:
            return self.files.path(row).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{file_id} is not UTF-8 text.", param=param) from None

    # -- evals

    def _eval(self, s: Session, project: str, eval_id: str) -> EvalRow:
        row = s.get(EvalRow, eval_id)
        if row is None or row.project != project:
            raise NotFound(f"No eval found with id '{eval_id}'.", param="eval_id")
        return row

    def create_eval(self, project: str, req: wire.EvalCreate) -> wire.Eval:
        config = req.data_source_config
        kind = config.get("type")
        if kind != "custom":
            raise InvalidRequest(
                f"data_source_config.type is {kind!r}; tunelab supports 'custom' (your own rows "
                "with an item_schema). Stored completions and logs are not kept here.",
                param="data_source_config.type",
            )
        unknown = set(config) - {"type", "item_schema", "include_sample_schema"}
        if unknown:
            key = sorted(unknown)[0]
            raise InvalidRequest(
                f"data_source_config.{key} is not a field of a custom data source config.",
                param=f"data_source_config.{key}",
            )
        item_schema = config.get("item_schema")
        check_item_schema(item_schema, "data_source_config.item_schema")
        assert isinstance(item_schema, dict)
        include_sample = config.get("include_sample_schema", False)
        if not isinstance(include_sample, bool):
            raise InvalidRequest(
                "data_source_config.include_sample_schema must be true or false.",
                param="data_source_config.include_sample_schema",
            )
        _, criteria_echo = parse_criteria(
            req.testing_criteria, item_schema, project=project, check_model=self.check_model
        )
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"item": item_schema},
            "required": ["item"],
        }
        if include_sample:
            schema["properties"]["sample"] = _sample_schema()
            schema["required"].append("sample")
        now = time.time()
        row = EvalRow(
            id=new_id("eval_", 32),
            project=project,
            name=req.name or "",
            created_at=now,
            updated_at=now,
            metadata_=_metadata(req.metadata),
            data_source_config={"type": "custom", "schema": schema},
            item_schema=item_schema,
            testing_criteria=criteria_echo,
        )
        with self.db.begin() as s:
            s.add(row)
        return eval_to_wire(row)

    def get_eval(self, project: str, eval_id: str) -> wire.Eval:
        with self.db() as s:
            return eval_to_wire(self._eval(s, project, eval_id))

    def list_evals(
        self, project: str, *, after: str | None, limit: int, order: str, order_by: str
    ) -> tuple[list[wire.Eval], bool]:
        check_limit(limit, 100)
        if order_by not in ("created_at", "updated_at"):
            raise InvalidRequest("order_by must be 'created_at' or 'updated_at'.", param="order_by")
        stmt = select(EvalRow).where(EvalRow.project == project)
        with self.db() as s:
            rows, more = paginate(
                s, stmt, EvalRow, after=after, limit=limit, order=order, created_col=order_by
            )
        return [eval_to_wire(r) for r in rows], more

    def update_eval(self, project: str, eval_id: str, req: wire.EvalUpdate) -> wire.Eval:
        metadata = _metadata(req.metadata)
        with self.db.begin() as s:
            row = self._eval(s, project, eval_id)
            if req.name is not None:
                row.name = req.name
            if req.metadata is not None:
                row.metadata_ = metadata
            row.updated_at = time.time()
        return eval_to_wire(row)

    def delete_eval(self, project: str, eval_id: str) -> wire.EvalDeleted:
        with self.db.begin() as s:
            self._eval(s, project, eval_id)
            # Runs still going stop at their next chunk: they no longer hold a row.
            run_ids = select(EvalRunRow.id).where(EvalRunRow.eval_id == eval_id)
            s.execute(delete(EvalOutputItemRow).where(EvalOutputItemRow.run_id.in_(run_ids)))
            s.execute(delete(EvalRunRow).where(EvalRunRow.eval_id == eval_id))
            s.execute(delete(EvalRow).where(EvalRow.id == eval_id))
        return wire.EvalDeleted(eval_id=eval_id)

    # -- runs

    def _run(self, s: Session, project: str, eval_id: str, run_id: str) -> EvalRunRow:
        self._eval(s, project, eval_id)
        row = s.get(EvalRunRow, run_id)
        if row is None or row.eval_id != eval_id:
            raise NotFound(f"No run found with id '{run_id}' in eval '{eval_id}'.", param="run_id")
        return row

    def create_run(
        self, project: str, eval_id: str, req: wire.RunCreate, *, report_base: str
    ) -> wire.EvalRun:
        with self.db() as s:
            ev = self._eval(s, project, eval_id)
        reads_sample = any(_criterion_reads_sample(c) for c in ev.testing_criteria)
        plan, echo, rows = parse_data_source(
            req.data_source,
            ev.item_schema,
            project=project,
            criteria_read_sample=reads_sample,
            read_file=self.read_file,
            check_model=self.check_model,
        )
        model = plan.sampling.model if plan.sampling else None
        run = EvalRunRow(
            id=new_id("evalrun_", 32),
            project=project,
            eval_id=eval_id,
            name=req.name or (f"{model} run" if model else "jsonl run"),
            created_at=time.time(),
            status="queued",
            model=model,
            data_source=echo,
            metadata_=_metadata(req.metadata),
            error=None,
            n_items=len(rows),
            result_counts={"total": 0, "errored": 0, "failed": 0, "passed": 0},
            usage={},
            per_testing_criteria_results=None,
            report_base=report_base.rstrip("/"),
            finished_at=None,
            worker_id=None,
            heartbeat_at=None,
            attempts=0,
        )
        with self.db.begin() as s:
            s.add(run)
        if self.on_run_created is not None:
            self.on_run_created()
        return run_to_wire(run)

    def get_run(self, project: str, eval_id: str, run_id: str) -> wire.EvalRun:
        with self.db() as s:
            return run_to_wire(self._run(s, project, eval_id, run_id))

    def list_runs(
        self,
        project: str,
        eval_id: str,
        *,
        after: str | None,
        limit: int,
        order: str,
        status: str | None,
    ) -> tuple[list[wire.EvalRun], bool]:
        check_limit(limit, 100)
        if status is not None and status not in states.STATUSES:
            raise InvalidRequest(
                f"status must be one of {', '.join(states.STATUSES)}.", param="status"
            )
        stmt = select(EvalRunRow).where(
            EvalRunRow.eval_id == eval_id, EvalRunRow.project == project
        )
        if status is not None:
            stmt = stmt.where(EvalRunRow.status == status)
        with self.db() as s:
            self._eval(s, project, eval_id)
            rows, more = paginate(s, stmt, EvalRunRow, after=after, limit=limit, order=order)
        return [run_to_wire(r) for r in rows], more

    def cancel_run(self, project: str, eval_id: str, run_id: str) -> wire.EvalRun:
        with self.db.begin() as s:
            run = self._run(s, project, eval_id, run_id)
            moved = states.apply(s, run_id, states.CANCEL, now=time.time())
            if moved is None:
                raise InvalidRequest(
                    f"Run {run_id} is {run.status}; only a queued or in_progress run can be "
                    "canceled.",
                    param="run_id",
                    code="invalid_run_status",
                )
            return run_to_wire(moved)

    def delete_run(self, project: str, eval_id: str, run_id: str) -> wire.RunDeleted:
        with self.db.begin() as s:
            self._run(s, project, eval_id, run_id)
            s.execute(delete(EvalOutputItemRow).where(EvalOutputItemRow.run_id == run_id))
            s.execute(delete(EvalRunRow).where(EvalRunRow.id == run_id))
        return wire.RunDeleted(run_id=run_id)

    # -- output items

    def list_output_items(
        self,
        project: str,
        eval_id: str,
        run_id: str,
        *,
        after: str | None,
        limit: int,
        order: str,
        status: str | None,
    ) -> tuple[list[wire.OutputItem], bool]:
        check_limit(limit, 100)
        if status is not None and status not in ("pass", "fail"):
            raise InvalidRequest("status must be 'pass' or 'fail'.", param="status")
        stmt = select(EvalOutputItemRow).where(EvalOutputItemRow.run_id == run_id)
        if status is not None:
            stmt = stmt.where(EvalOutputItemRow.status == status)
        with self.db() as s:
            self._run(s, project, eval_id, run_id)
            rows, more = paginate(s, stmt, EvalOutputItemRow, after=after, limit=limit, order=order)
        return [item_to_wire(r) for r in rows], more

    def get_output_item(
        self, project: str, eval_id: str, run_id: str, item_id: str
    ) -> wire.OutputItem:
        with self.db() as s:
            self._run(s, project, eval_id, run_id)
            row = s.get(EvalOutputItemRow, item_id)
            if row is None or row.run_id != run_id:
                raise NotFound(
                    f"No output item found with id '{item_id}' in run '{run_id}'.",
                    param="output_item_id",
                )
            return item_to_wire(row)


def _criterion_reads_sample(c: dict[str, Any]) -> bool:
    texts: list[str] = []
    for key in ("input", "reference"):
        if isinstance(c.get(key), str):
            texts.append(c[key])
    messages = c.get("input")
    for m in messages if isinstance(messages, list) else []:
        texts.append(m["content"]["text"])
    for sub in (c.get("graders") or {}).values():
        if _criterion_reads_sample(sub):
            return True
    return any(uses_sample(t) for t in texts)


def eval_to_wire(row: EvalRow) -> wire.Eval:
    return wire.Eval(
        id=row.id,
        created_at=int(row.created_at),
        name=row.name,
        data_source_config=row.data_source_config,
        testing_criteria=row.testing_criteria,
        metadata=row.metadata_,
    )


def run_to_wire(row: EvalRunRow) -> wire.EvalRun:
    done = row.status in states.TERMINAL
    usage = None
    if done:
        usage = [
            wire.ModelUsage(
                model_name=model,
                invocation_count=u["invocation_count"],
                prompt_tokens=u["prompt_tokens"],
                completion_tokens=u["completion_tokens"],
                total_tokens=u["prompt_tokens"] + u["completion_tokens"],
            )
            for model, u in sorted(row.usage.items())
        ]
    return wire.EvalRun(
        id=row.id,
        eval_id=row.eval_id,
        name=row.name,
        model=row.model,
        created_at=int(row.created_at),
        status=row.status,
        data_source=row.data_source,
        metadata=row.metadata_ or {},
        error=wire.RunError(**row.error) if row.error else None,
        # The dashboard's page of this run (a person signs in with their key).
        report_url=f"{row.report_base}/dashboard/evals/{row.eval_id}?run_id={row.id}",
        result_counts=wire.ResultCounts(**row.result_counts),
        per_model_usage=usage,
        per_testing_criteria_results=(
            [wire.CriterionResult(**r) for r in row.per_testing_criteria_results]
            if done and row.per_testing_criteria_results is not None
            else None
        ),
        progress=wire.Progress(completed=row.result_counts["total"], total=row.n_items),
    )


def item_to_wire(row: EvalOutputItemRow) -> wire.OutputItem:
    return wire.OutputItem(
        id=row.id,
        created_at=int(row.created_at),
        run_id=row.run_id,
        eval_id=row.eval_id,
        status=row.status,
        datasource_item_id=row.datasource_item_id,
        datasource_item=row.datasource_item,
        results=row.results,
        sample=row.sample,
    )
