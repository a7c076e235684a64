"""What request handlers depend on: the runtime's services and the caller's project.

The app holds its `Runtime` as a typed attribute (`TunelabApp.runtime`); this is
the one place that reads it. Handlers declare the service they use
(`files: FilesDep`) and the caller's project (`project: ProjectDep`).

Auth: with API keys configured (TUNELAB_API_KEYS and/or keys made with
`tunelab keys create`), every /v1 request needs `Authorization: Bearer KEY`; the
key decides the project. With no keys configured every request belongs to
project "default" (and `serve` refuses to listen on a non-loopback address).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, FastAPI, Request

from tunelab.batches.service import BatchService
from tunelab.embeddings.protocol import Embedder
from tunelab.errors import Unauthorized
from tunelab.files import FileStore
from tunelab.inference.service import InferenceService
from tunelab.jobs.preview import FileReports
from tunelab.jobs.service import JobService
from tunelab.keys import KeyStore
from tunelab.legacy.fine_tunes import LegacyFineTunes
from tunelab.models.catalog import Catalog
from tunelab.models.registry import Registry
from tunelab.responses.service import ResponsesService
from tunelab.retrieval.search import Searcher
from tunelab.retrieval.stores import VectorStores
from tunelab.runtime import Runtime
from tunelab.settings import Settings
from tunelab.uploads import UploadStore

DEFAULT_PROJECT = "default"


class TunelabApp(FastAPI):
    """The FastAPI app of one running tunelab, holding its runtime."""

    def __init__(self, runtime: Runtime, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runtime = runtime


def get_runtime(request: Request) -> Runtime:
    return cast(TunelabApp, request.app).runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# Where `tunelab.api.guard` leaves the project of a request's key.
PROJECT_SCOPE_KEY = "tunelab_project"


def authenticate(keys: KeyStore, header: str) -> str:
    """The project of the `Authorization` header's key (Unauthorized if none).

    The 401 never repeats any part of the key it was given: a key pasted into the
    wrong place should not travel on into logs of the reply."""
    if not keys.any_configured():
        return DEFAULT_PROJECT
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
            "(the openai SDK does this with api_key=...).",
            code="missing_api_key",
        )
    project = keys.project_for(key.strip())
    if project is None:
        raise Unauthorized(
            "Incorrect API key provided. Check TUNELAB_API_KEYS or `tunelab keys list`."
        )
    return project


def current_project(request: Request, rt: RuntimeDep) -> str:
    """The caller's project, as the guard found it before the body was read."""
    project = request.scope.get("state", {}).get(PROJECT_SCOPE_KEY)
    if isinstance(project, str):
        return project
    return authenticate(rt.keys, request.headers.get("authorization", ""))


ProjectDep = Annotated[str, Depends(current_project)]


def _settings(rt: RuntimeDep) -> Settings:
    return rt.settings


def _registry(rt: RuntimeDep) -> Registry:
    return rt.registry


def _catalog(rt: RuntimeDep) -> Catalog:
    return rt.catalog


def _files(rt: RuntimeDep) -> FileStore:
    return rt.files


def _embeddings(rt: RuntimeDep) -> Embedder:
    return rt.embeddings


def _inference(rt: RuntimeDep) -> InferenceService:
    return rt.inference


def _jobs(rt: RuntimeDep) -> JobService:
    return rt.jobs


def _reports(rt: RuntimeDep) -> FileReports:
    return rt.reports


def _stores(rt: RuntimeDep) -> VectorStores:
    return rt.retrieval.stores


def _searcher(rt: RuntimeDep) -> Searcher:
    return rt.retrieval.searcher


def _responses(rt: RuntimeDep) -> ResponsesService:
    return rt.responses


def _batches(rt: RuntimeDep) -> BatchService:
    return rt.batches


def _uploads(rt: RuntimeDep) -> UploadStore:
    return rt.uploads


def _legacy(rt: RuntimeDep) -> LegacyFineTunes:
    return rt.legacy


SettingsDep = Annotated[Settings, Depends(_settings)]
RegistryDep = Annotated[Registry, Depends(_registry)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
FilesDep = Annotated[FileStore, Depends(_files)]
EmbeddingsDep = Annotated[Embedder, Depends(_embeddings)]
InferenceDep = Annotated[InferenceService, Depends(_inference)]
JobsDep = Annotated[JobService, Depends(_jobs)]
ReportsDep = Annotated[FileReports, Depends(_reports)]
StoresDep = Annotated[VectorStores, Depends(_stores)]
SearcherDep = Annotated[Searcher, Depends(_searcher)]
ResponsesDep = Annotated[ResponsesService, Depends(_responses)]
BatchesDep = Annotated[BatchService, Depends(_batches)]
UploadsDep = Annotated[UploadStore, Depends(_uploads)]
LegacyDep = Annotated[LegacyFineTunes, Depends(_legacy)]
