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

from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType

from tunelab.blobs import BlobStore, LocalBlobStore
from tunelab.db.base import Database, migrate
from tunelab.embeddings.protocol import Embedder
from tunelab.files import FileStore
from tunelab.inference.protocol import ChatEngine
from tunelab.inference.service import InferenceService
from tunelab.jobs.service import JobService
from tunelab.jobs.worker import Worker, background_worker
from tunelab.keys import KeyStore
from tunelab.models.catalog import Catalog
from tunelab.models.registry import Registry
from tunelab.responses.service import ResponsesService
from tunelab.retrieval.service import Retrieval, build_retrieval
from tunelab.settings import Settings


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
    retrieval: Retrieval
    responses: ResponsesService
    # The job worker that runs inside this process, when settings.embedded_worker.
    worker: Worker | None
    _running: ExitStack = field(default_factory=ExitStack)

    def new_worker(self) -> Worker:
        """A job worker on this runtime's services (for `tunelab worker`, which runs
        it in the foreground)."""
        return Worker(self.db, self.settings, self.catalog, self.files)

    def start(self) -> None:
        """Begin background work: ingestion (re-queueing interrupted files) and,
        when embedded, the job worker."""
        self.retrieval.start()
        self._running.callback(self.retrieval.close)
        if self.worker is not None:
            self._running.enter_context(background_worker(self.worker))

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
) -> Runtime:
    """Build every service; nothing starts running until `start()`.

    `chat_engine`, `embedder` and `blobs` replace the defaults (transformers,
    sentence-transformers, a local directory). `embedded_worker` overrides
    `settings.embedded_worker` (a standalone `tunelab worker` runs its own).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db_url)
    db = Database(settings.db_url)
    registry = Registry.load(settings.registry_file)
    catalog = Catalog(registry, db, settings.models_dir)
    files = FileStore(
        db, blobs or LocalBlobStore(settings.files_dir), max_bytes=settings.max_upload_bytes
    )
    embeddings = embedder or _default_embedder(settings, registry)
    inference = InferenceService(chat_engine or _default_chat_engine(settings), catalog)
    retrieval = build_retrieval(
        db,
        files,
        embeddings,
        default_embedding_model=settings.default_embedding_model,
    )
    run_worker = settings.embedded_worker if embedded_worker is None else embedded_worker
    return Runtime(
        settings=settings,
        db=db,
        registry=registry,
        catalog=catalog,
        keys=KeyStore(db, settings.parsed_api_keys()),
        files=files,
        embeddings=embeddings,
        inference=inference,
        jobs=JobService(db, registry, catalog, files),
        retrieval=retrieval,
        responses=ResponsesService(inference, retrieval.searcher),
        worker=Worker(db, settings, catalog, files) if run_worker else None,
    )


def _default_embedder(settings: Settings, registry: Registry) -> Embedder:
    from tunelab.embeddings.service import EmbeddingService

    return EmbeddingService(
        registry,
        device=settings.device,
        window_ms=settings.embed_batch_window_ms,
        max_batch=settings.embed_max_batch,
        bf16=settings.embed_bf16,
    )


def _default_chat_engine(settings: Settings) -> ChatEngine:
    from tunelab.inference.engine import InferenceEngine

    return InferenceEngine(settings)
