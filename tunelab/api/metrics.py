"""Prometheus metrics at /metrics: HTTP traffic, queue depths, tokens, jobs, models.

Two sources, one registry per app (tests build many apps in one process, so the
global default registry is not used):

- HTTP traffic is counted by a middleware as it happens: requests and latency per
  method, route *template* (`/v1/files/{file_id}`, never the concrete path, so the
  number of series stays bounded) and status. Latency is time to the response's
  headers; a stream's body is not included.
- Everything else is read at scrape time through the Runtime, so it is never stale
  and costs nothing between scrapes: queue depths (jobs, batches and ingestion
  from the database, which every replica shares; generation and embedding queues
  from this process's engines), tokens generated, durations of finished jobs,
  loaded models and adapters.

`TUNELAB_METRICS_TOKEN`, when set, must be sent as `Authorization: Bearer <token>`;
the endpoint is otherwise open (like /health), as scrapers usually run inside
the deployment's network.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunelab.batches import states as batch_states
from tunelab.batches.tables import BatchRow
from tunelab.jobs import states as job_states
from tunelab.jobs.tables import Job
from tunelab.retrieval.tables import VectorStoreFileRow
from tunelab.runtime import Runtime

# Seconds; from a health check to a long non-streamed generation on CPU.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A path parameter in a route template, with an optional converter: {name} or {name:path}.
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
UNMATCHED = "<unmatched>"  # 404s for arbitrary paths share one series


class RuntimeCollector(Collector):
    """Reads the runtime's state on each scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "tunelab_queue_depth",
            "Work waiting or in progress, per queue (jobs, batches and ingestion are "
            "database-wide; generation and embedding are this process's engines).",
            labels=["queue"],
        )
        for queue, n in self._queue_depths().items():
            depth.add_metric([queue], n)
        yield depth

        stats = self.rt.inference.engine.stats()
        tokens = CounterMetricFamily(
            "tunelab_generated_tokens",
            "Completion tokens generated, per loaded chat model.",
            labels=["model"],
        )
        prompt = CounterMetricFamily(
            "tunelab_prefill_tokens",
            "Prompt tokens processed, per loaded chat model.",
            labels=["model"],
        )
        adapter_loads = CounterMetricFamily(
            "tunelab_adapter_loads", "LoRA adapters loaded, per base model.", labels=["model"]
        )
        for model, counters in stats.items():
            tokens.add_metric([model], counters.get("generated_tokens", 0))
            prompt.add_metric([model], counters.get("prefill_tokens", 0))
            adapter_loads.add_metric([model], counters.get("adapter_loads", 0))
        yield tokens
        yield prompt
        yield adapter_loads

        loaded = GaugeMetricFamily(
            "tunelab_loaded_models",
            "Models in memory in this process (1 each).",
            labels=["kind", "model"],
        )
        for model in stats:
            loaded.add_metric(["chat", model], 1)
        for spec in self.rt.registry.all():
            if spec.kind == "embedding" and self.rt.embeddings.loaded(spec.id):
                loaded.add_metric(["embedding", spec.id], 1)
        yield loaded

        yield from self._jobs()

    def _queue_depths(self) -> dict[str, int]:
        with self.rt.db() as s:
            jobs = s.scalar(
                select(func.count()).where(Job.status.in_(job_states.ACTIVE[:2]))
            )  # validating_files, queued: not yet picked up by a worker
            batches = s.scalar(select(func.count()).where(BatchRow.status.in_(batch_states.ACTIVE)))
            ingestion = s.scalar(
                select(func.count()).where(VectorStoreFileRow.status == "in_progress")
            )
        stats = self.rt.inference.engine.stats()
        return {
            "generation": sum(c.get("waiting", 0) + c.get("running", 0) for c in stats.values()),
            "embedding": self._embedding_depth(),
            "ingestion": ingestion or 0,
            "jobs": jobs or 0,
            "batches": batches or 0,
        }

    def _embedding_depth(self) -> int:
        from tunelab.embeddings.service import EmbeddingService

        embeddings = self.rt.embeddings
        if isinstance(embeddings, EmbeddingService):
            return sum(embeddings.queue_depths().values())
        return 0  # another embedder (a test fake, a remote one) keeps no queue here

    def _jobs(self) -> Iterator[Metric]:
        with self.rt.db() as s:
            by_status = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            finished = s.execute(
                select(Job.status, func.count(), func.sum(Job.finished_at - Job.created_at))
                .where(Job.finished_at.is_not(None))
                .group_by(Job.status)
            ).all()
        jobs = GaugeMetricFamily("tunelab_jobs", "Fine-tuning jobs per status.", labels=["status"])
        counts: dict[str, int] = dict.fromkeys(job_states.STATUSES, 0)
        counts.update((status, n) for status, n in by_status)
        for status, n in counts.items():
            jobs.add_metric([status], n)
        yield jobs
        durations = SummaryMetricFamily(
            "tunelab_job_duration_seconds",
            "Creation to end of finished fine-tuning jobs, per final status.",
            labels=["status"],
        )
        for status, n, total in finished:
            durations.add_metric([status], count_value=n, sum_value=float(total or 0.0))
        yield durations


def install(app: FastAPI, rt: Runtime) -> None:
    """Count the app's traffic and serve /metrics."""
    registry = CollectorRegistry()
    requests = Counter(
        "tunelab_http_requests",
        "HTTP requests, per method, route template and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "tunelab_http_request_duration_seconds",
        "Time to the response's headers, per method, route template and status.",
        ["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    registry.register(RuntimeCollector(rt))
    token = rt.settings.metrics_token

    app.add_middleware(HttpTraffic, requests=requests, latency=latency)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if token is not None and not _bearer_matches(request, token):
            return Response(
                "metrics need 'Authorization: Bearer <TUNELAB_METRICS_TOKEN>'\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
                media_type="text/plain",
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class HttpTraffic:
    """Counts each HTTP request and observes its time to the response's headers.

    A plain ASGI middleware, not an `@app.middleware("http")` one: those run every
    request in a task group of its own and pass each streamed chunk through a memory
    stream, a few milliseconds per request and a task switch per token here."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self._observe(scope, status, start)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            if status is None:  # an exception no handler turned into a response
                self._observe(scope, 500, start)

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        labels = (scope["method"], _template(scope), str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(time.perf_counter() - start)


def _template(scope: Scope) -> str:
    """The matched route's template, with the prefix of the router it was included
    under: FastAPI's matched route knows only its own part (`/files/{file_id}`), so
    the prefix is what of the concrete path comes before that part, filled in."""
    route = scope.get("route")
    own = getattr(route, "path", None)
    if not isinstance(own, str):
        return UNMATCHED
    params = scope.get("path_params", {})
    filled = _PARAM.sub(lambda m: str(params.get(m[1], m[0])), own)
    path = str(scope.get("path", ""))
    prefix = path[: -len(filled)] if filled and path.endswith(filled) else ""
    return prefix + _PARAM.sub(lambda m: "{" + m[1] + "}", own)


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
