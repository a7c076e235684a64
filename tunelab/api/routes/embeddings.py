"""POST /v1/embeddings (contract §7); tunelab.embeddings.endpoint does the work."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tunelab.api.deps import EmbeddingsDep, ProjectDep, RegistryDep
from tunelab.embeddings.endpoint import create_embeddings as embed
from tunelab.protocol.embeddings import EmbeddingRequest

router = APIRouter()


@router.post("/embeddings")
def create_embeddings(
    req: EmbeddingRequest, emb: EmbeddingsDep, registry: RegistryDep, project: ProjectDep
) -> JSONResponse:
    return JSONResponse(embed(req, registry, emb))
