"""The service objects one running server shares, built once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from tunelab.db.base import make_engine, make_sessionmaker, migrate
from tunelab.embeddings.service import EmbeddingService
from tunelab.files import FileStore
from tunelab.hardware import bf16_fast
from tunelab.models.catalog import Catalog
from tunelab.models.registry import Registry
from tunelab.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    db: sessionmaker
    registry: Registry
    catalog: Catalog
    files: FileStore
    embeddings: EmbeddingService

    def close(self) -> None:
        self.embeddings.close()
        self.engine.dispose()


def build_services(settings: Settings, *, embeddings: EmbeddingService | None = None) -> Services:
    """Create directories, migrate the database and wire the services together."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    db = make_sessionmaker(engine)
    registry = Registry.load(
        settings.registry_file, default_embedding_model=settings.default_embedding_model
    )
    device = settings.resolved_device()
    return Services(
        settings=settings,
        engine=engine,
        db=db,
        registry=registry,
        catalog=Catalog(registry, db, settings.models_dir),
        files=FileStore(db, settings.files_dir, max_bytes=settings.max_upload_bytes),
        embeddings=embeddings
        or EmbeddingService(
            registry,
            settings.model_cache_dir,
            device=device,
            window_ms=settings.embed_batch_window_ms,
            max_batch=settings.embed_max_batch,
            bf16=bf16_fast(device) if settings.embed_bf16 is None else settings.embed_bf16,
        ),
    )
