"""Models API (contract §5): base models and the project's fine-tunes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tunelab.api.deps import CatalogDep, ProjectDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.models.catalog import ResolvedModel
from tunelab.protocol.common import Deleted, Model

router = APIRouter(route_class=ApiRoute)


def to_wire(m: ResolvedModel) -> Model:
    return Model(id=m.id, created=m.created, owned_by=m.owned_by)


@router.get("/models")
def list_models(catalog: CatalogDep, project: ProjectDep) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [to_wire(m).model_dump() for m in catalog.list(project)],
    }


# `:path` because model ids contain colons and may contain slashes (ft:..., org/name).
@router.get("/models/{model:path}")
def retrieve_model(model: str, catalog: CatalogDep, project: ProjectDep) -> Model:
    return to_wire(catalog.resolve(project, model))


@router.delete("/models/{model:path}")
def delete_model(model: str, catalog: CatalogDep, project: ProjectDep) -> Deleted:
    catalog.delete(project, model)
    return Deleted(id=model, object="model")
