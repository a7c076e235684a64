"""The eval runner: claims queued runs from the database and grades their rows.

One background thread per runtime (started and stopped by it). A run is claimed
with the same conditional update as a job (`states.START`), so several runners on
one database never share a run. Rows are done in chunks: the chunk's generations
are submitted together (the chat engine batches them), then graded; the chunk's
output items and the new counts are written in one transaction that also proves
the runner still holds the run, so a cancelled or deleted run stops within a
chunk and nothing half-graded is ever stored. Rows already graded are skipped, so
a run re-queued after a restart resumes where it stopped; a run whose runner
stopped heart-beating (a killed server) is re-queued by whichever runner notices.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tunelab.db.base import Database
from tunelab.embeddings.protocol import Embedder
from tunelab.errors import TunelabError
from tunelab.evals import states
from tunelab.evals.criteria import Criterion, parse_criteria
from tunelab.evals.datasource import Plan, Row, Sampling, file_rows, inline_rows, plan_from_echo
from tunelab.evals.graders import Grade, Grading, UsageTally, grade
from tunelab.evals.judging import Judge
from tunelab.evals.tables import EvalOutputItemRow, EvalRow, EvalRunRow
from tunelab.evals.templates import render, resolve
from tunelab.files import FileStore
from tunelab.ids import new_id, random_token
from tunelab.inference.grammars import json_object_grammar
from tunelab.inference.params import SamplingRequest
from tunelab.inference.service import InferenceService, Submitted

log = logging.getLogger(__name__)

CHUNK = 8  # rows generated together and committed together


@dataclass
class Sampled:
    """A row's sample: what graders see (`namespace`) and what the output item shows."""

    namespace: dict[str, Any] | None
    shown: dict[str, Any] | None
    error: str | None = None


class Lost(Exception):
    """The runner no longer holds the run (cancelled, deleted, or taken back)."""


class EvalRunner:
    def __init__(
        self,
        db: Database,
        files: FileStore,
        inference: InferenceService,
        embedder: Embedder,
        judge: Judge,
        *,
        embedding_model: str,
        poll_seconds: float = 1.0,
        stale_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.files = files
        self.inference = inference
        self.embedder = embedder
        self.judge = judge
        self.embedding_model = embedding_model
        self.poll_seconds = poll_seconds
        self.stale_seconds = stale_seconds
        self.clock = clock
        self.worker_id = f"evals-{random_token(12)}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="eval-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Stop after the current chunk; the run in hand goes back to the queue."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.recover_stale()
                run_id = self.claim()
                if run_id is not None:
                    self.process(run_id)
                    continue
            except Exception:
                log.exception("eval runner iteration failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    # -- queue

    def recover_stale(self) -> int:
        """Re-queue in-progress runs whose runner stopped heart-beating; how many."""
        cutoff = self.clock() - self.stale_seconds
        with self.db() as s:
            stale = s.execute(
                select(EvalRunRow.id, EvalRunRow.heartbeat_at).where(
                    EvalRunRow.status == "in_progress", EvalRunRow.heartbeat_at < cutoff
                )
            ).all()
        n = 0
        for run_id, seen in stale:
            with self.db.begin() as s:
                where = [EvalRunRow.heartbeat_at == seen]
                n += (
                    states.apply(s, run_id, states.REQUEUE, now=self.clock(), where=where)
                    is not None
                )
        return n

    def claim(self) -> str | None:
        """Take the oldest queued run; its id, or None when there is none."""
        with self.db() as s:
            candidates = list(
                s.execute(
                    select(EvalRunRow.id)
                    .where(EvalRunRow.status == "queued")
                    .order_by(EvalRunRow.created_at, EvalRunRow.id)
                    .limit(5)
                ).scalars()
            )
        for run_id in candidates:
            with self.db.begin() as s:
                taken = states.apply(
                    s, run_id, states.START, now=self.clock(), worker_id=self.worker_id
                )
            if taken is not None:
                return run_id
        return None

    # -- one run

    def process(self, run_id: str) -> None:
        with self.db() as s:
            run = s.get(EvalRunRow, run_id)
            ev = s.get(EvalRow, run.eval_id) if run is not None else None
            if run is None or ev is None:
                return
            done = set(
                s.execute(
                    select(EvalOutputItemRow.datasource_item_id).where(
                        EvalOutputItemRow.run_id == run_id
                    )
                ).scalars()
            )
        try:
            criteria, _ = parse_criteria(ev.testing_criteria, ev.item_schema)
            plan = plan_from_echo(run.data_source, ev.item_schema)
            rows = self._rows(run, plan)
            if plan.sampling is not None:
                self.inference.target(run.project, plan.sampling.model, fetch=False)
        except TunelabError as e:
            self._fail(run_id, "invalid_run", e.message)
            return
        except Exception as e:  # a bug: fail the run visibly rather than loop on it
            log.exception("eval run %s could not start", run_id)
            self._fail(run_id, "internal_error", f"{type(e).__name__}: {e}")
            return
        usage = UsageTally()
        usage.merge(run.usage)
        ctx = Grading(run.project, self.judge, self._cosine, usage)
        pending = [i for i in range(len(rows)) if i not in done]
        try:
            for start in range(0, len(pending), CHUNK):
                if self._stop.is_set():
                    with self.db.begin() as s:
                        states.apply(
                            s, run_id, states.REQUEUE, now=self.clock(), worker_id=self.worker_id
                        )
                    return
                chunk = pending[start : start + CHUNK]
                sampled = self._sample(run.project, plan, [rows[i] for i in chunk], usage)
                graded = [
                    [grade(c, rows[i].item, smp.namespace, ctx) for c in criteria]
                    if smp.error is None
                    else []
                    for i, smp in zip(chunk, sampled, strict=True)
                ]
                self._commit(run, criteria, chunk, rows, sampled, graded, usage)
            self._complete(run_id, criteria, usage)
        except Lost:
            return
        except Exception as e:
            log.exception("eval run %s failed", run_id)
            self._fail(run_id, "internal_error", f"{type(e).__name__}: {e}")

    def _rows(self, run: EvalRunRow, plan: Plan) -> list[Row]:
        if plan.file_id is None:
            return inline_rows(run.data_source)
        row = self.files.get(run.project, plan.file_id)
        text = self.files.path(row).read_text(encoding="utf-8")
        return [Row(dict(r["item"]), r.get("sample")) for r in file_rows(text, "file")]

    def _cosine(self, a: str, b: str) -> float:
        v = self.embedder.embed(self.embedding_model, [a, b])
        return float(v[0] @ v[1])

    # -- sampling

    def _sample(
        self, project: str, plan: Plan, rows: list[Row], usage: UsageTally
    ) -> list[Sampled]:
        sp = plan.sampling
        if sp is None:
            return [Sampled(r.sample, r.sample) for r in rows]
        started: list[tuple[list[dict[str, str]], Submitted | str]] = []
        for row in rows:  # submit all first: the engine decodes them as one batch
            messages, prompt = _prompt(sp, row.item)
            try:
                sub = (
                    self.inference.start_completion(project, sp.model, prompt, _request(sp))
                    if prompt is not None
                    else self.inference.start_chat(project, sp.model, messages, _request(sp))
                )
                started.append((messages, sub))
            except TunelabError as e:
                started.append((messages, e.message))
        out = []
        for messages, handle in started:
            if isinstance(handle, str):
                out.append(Sampled(None, _shown(sp, messages, None, handle), handle))
                continue
            sub = handle
            try:
                choice = sub.collect()[0]
            except TunelabError as e:
                out.append(Sampled(None, _shown(sp, messages, None, e.message), e.message))
                continue
            usage.add(sp.model, 1, sub.prompt_tokens, choice.completion_tokens)
            namespace = _namespace(sp, choice.text, choice.finish_reason or "stop")
            result = (choice.text, choice.finish_reason or "stop", sub.prompt_tokens,
                      choice.completion_tokens)  # fmt: skip
            out.append(Sampled(namespace, _shown(sp, messages, result, None)))
        return out

    # -- writing

    def _commit(
        self,
        run: EvalRunRow,
        criteria: list[Criterion],
        chunk: list[int],
        rows: list[Row],
        sampled: list[Sampled],
        graded: list[list[Grade]],
        usage: UsageTally,
    ) -> None:
        now = self.clock()
        with self.db.begin() as s:
            current = s.get(EvalRunRow, run.id)
            if current is None:
                raise Lost
            counts = dict(current.result_counts)
            items = []
            for i, smp, grades in zip(chunk, sampled, graded, strict=True):
                errored = smp.error is not None or any(g.error for g in grades)
                passed = not errored and all(g.passed for g in grades)
                counts["total"] += 1
                counts["errored" if errored else "passed" if passed else "failed"] += 1
                results = [
                    {**g.to_json(), "testing_criteria": c.id}
                    for c, g in zip(criteria, grades, strict=True)
                ]
                items.append(
                    EvalOutputItemRow(
                        id=new_id("outputitem_", 32),
                        project=run.project,
                        run_id=run.id,
                        eval_id=run.eval_id,
                        created_at=now,
                        datasource_item_id=i,
                        status="pass" if passed else "fail",
                        errored=errored,
                        datasource_item=rows[i].item,
                        results=results,
                        sample=smp.shown,
                    )
                )
            changes = {"result_counts": counts, "usage": usage.to_json()}
            if not states.heartbeat(s, run.id, self.worker_id, now, changes):
                raise Lost
            s.add_all(items)

    def _complete(self, run_id: str, criteria: list[Criterion], usage: UsageTally) -> None:
        with self.db() as s:
            results = list(
                s.execute(
                    select(EvalOutputItemRow.results).where(EvalOutputItemRow.run_id == run_id)
                ).scalars()
            )
        per = []
        for c in criteria:
            passed = sum(
                1 for rs in results for r in rs if r["testing_criteria"] == c.id and r["passed"]
            )
            failed = sum(
                1 for rs in results for r in rs if r["testing_criteria"] == c.id and not r["passed"]
            )
            per.append({"testing_criteria": c.id, "passed": passed, "failed": failed})
        with self.db.begin() as s:
            states.apply(
                s,
                run_id,
                states.COMPLETE,
                now=self.clock(),
                worker_id=self.worker_id,
                changes={"per_testing_criteria_results": per, "usage": usage.to_json()},
            )

    def _fail(self, run_id: str, code: str, message: str) -> None:
        with self.db.begin() as s:
            states.apply(
                s,
                run_id,
                states.FAIL,
                now=self.clock(),
                worker_id=self.worker_id,
                changes={"error": {"code": code, "message": message}},
            )


def _request(sp: Sampling) -> SamplingRequest:
    return SamplingRequest(
        max_tokens=sp.max_tokens,
        max_tokens_param="max_completion_tokens",
        temperature=sp.temperature if sp.temperature is not None else 1.0,
        top_p=sp.top_p if sp.top_p is not None else 1.0,
        seed=sp.seed,
        grammar=json_object_grammar() if sp.json_mode else None,
    )


def _prompt(sp: Sampling, item: Mapping[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    """(chat messages, or a raw prompt when the item reference is a string)."""
    if sp.template is not None:
        return [
            {"role": m.role, "content": render(m.content, item, None)} for m in sp.template
        ], None
    assert sp.reference is not None
    value = resolve(sp.reference, item, None)
    if isinstance(value, str):
        return [{"role": "user", "content": value}], value
    if not isinstance(value, list):
        return [{"role": "user", "content": json.dumps(value)}], None
    return [
        {"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
        for m in value
        if isinstance(m, Mapping)
    ], None


def _namespace(sp: Sampling, text: str, finish_reason: str) -> dict[str, Any]:
    ns: dict[str, Any] = {
        "model": sp.model,
        "output_text": text,
        "output_tools": [],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
    }
    if sp.json_mode:
        try:
            ns["output_json"] = json.loads(text)
        except ValueError:
            ns["output_json"] = None
    return ns


def _shown(
    sp: Sampling,
    messages: list[dict[str, str]],
    result: tuple[str, str, int, int] | None,
    error: str | None,
) -> dict[str, Any]:
    text, finish, prompt_tokens, completion_tokens = result or ("", "error", 0, 0)
    return {
        "input": messages,
        "output": [{"role": "assistant", "content": text}] if result else [],
        "finish_reason": finish,
        "model": sp.model,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cached_tokens": 0,
        },
        "error": {"code": "sampling_error", "message": error} if error else None,
        "temperature": sp.temperature if sp.temperature is not None else 1.0,
        "max_completion_tokens": sp.max_tokens,
        "top_p": sp.top_p if sp.top_p is not None else 1.0,
        "seed": sp.seed,
    }
