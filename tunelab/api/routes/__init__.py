"""One module per resource. Each exposes `router` (an APIRouter mounted under /v1,
except health) and may expose `setup(app, services)`, called once at startup,
returning a context manager whose exit runs at shutdown (or None)."""

ROUTE_MODULES = [
    "tunelab.api.routes.health",
    "tunelab.api.routes.files",
    "tunelab.api.routes.models",
    "tunelab.api.routes.embeddings",
    "tunelab.api.routes.fine_tuning",
    "tunelab.api.routes.chat",
    "tunelab.api.routes.vector_stores",
    "tunelab.api.routes.responses",
]
