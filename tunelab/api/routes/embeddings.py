"""POST /v1/embeddings (contract §7); tunelab.embeddings.endpoint does the work."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tunelab.api.deps import ProjectDep, ServicesDep
from tunelab.embeddings.endpoint import create_embeddings as embed
from tunelab.protocol.embeddings import EmbeddingRequest

router = APIRouter()


@router.post("/embeddings")
def create_embeddings(
    req: EmbeddingRequest, services: ServicesDep, project: ProjectDep
) -> JSONResponse:
    return JSONResponse(embed(req, services.registry, services.embeddings))
