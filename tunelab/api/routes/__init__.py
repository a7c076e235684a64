"""One module per resource, each exposing `router`. All but health live under /v1."""

from tunelab.api.routes import (
    batches,
    chat,
    embeddings,
    files,
    fine_tuning,
    health,
    legacy,
    models,
    responses,
    uploads,
    vector_stores,
)

V1_ROUTERS = [
    files.router,
    models.router,
    embeddings.router,
    fine_tuning.router,
    chat.router,
    vector_stores.router,
    responses.router,
    legacy.router,
    batches.router,
    uploads.router,
]

__all__ = ["V1_ROUTERS", "health"]
