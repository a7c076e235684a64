"""The catalog: every model a project can call — base models from the registry and
the project's own fine-tunes (final models and checkpoints) from the database.

Fine-tunes are registered the moment a job writes them, so they answer at once
and survive restarts; another project's fine-tune does not exist for you (404).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import select

from tunelab.db.base import Database, now
from tunelab.db.tables import FineTunedModelRow
from tunelab.errors import PermissionDenied, model_not_found
from tunelab.models.registry import ModelSpec, Registry


@dataclass(frozen=True)
class ResolvedModel:
    id: str
    base: ModelSpec
    kind: Literal["base", "lora", "full"]
    path: Path | None = None  # adapter or full-weights directory for fine-tunes
    owned_by: str = "tunelab"
    created: int = 0


class Catalog:
    def __init__(self, registry: Registry, db: Database, models_dir: Path) -> None:
        self.registry = registry
        self.db = db
        self.models_dir = models_dir

    def register_fine_tuned(
        self,
        *,
        project: str,
        model_id: str,
        base_model: str,
        path: Path,
        kind: Literal["lora", "full"],
        job_id: str | None = None,
        step: int | None = None,
    ) -> None:
        with self.db.begin() as s:
            s.merge(
                FineTunedModelRow(
                    id=model_id,
                    project=project,
                    base_model=base_model,
                    kind=kind,
                    path=str(path),
                    job_id=job_id,
                    step=step,
                    created_at=now(),
                )
            )

    def _row(self, project: str, model: str) -> FineTunedModelRow | None:
        with self.db() as s:
            row = s.get(FineTunedModelRow, model)
        return row if row is not None and row.project == project else None

    def _from_row(self, row: FineTunedModelRow) -> ResolvedModel | None:
        base = self.registry.find(row.base_model)
        if base is None:  # its base model was removed from the registry file
            return None
        return ResolvedModel(
            id=row.id,
            base=base,
            kind="full" if row.kind == "full" else "lora",
            path=Path(row.path),
            owned_by=row.project,
            created=row.created_at,
        )

    def resolve(self, project: str, model: str) -> ResolvedModel:
        row = self._row(project, model)
        if row is not None:
            resolved = self._from_row(row)
            if resolved is None:
                raise model_not_found(model)
            return resolved
        spec = self.registry.find(model)
        if spec is None:
            raise model_not_found(model)
        return ResolvedModel(id=model, base=spec, kind="base", created=spec.created)

    def list(self, project: str) -> list[ResolvedModel]:
        out = [
            ResolvedModel(id=s.id, base=s, kind="base", created=s.created)
            for s in self.registry.all()
        ]
        with self.db() as s:
            rows = s.execute(
                select(FineTunedModelRow)
                .where(FineTunedModelRow.project == project)
                .order_by(FineTunedModelRow.created_at, FineTunedModelRow.id)
            ).scalars()
            out.extend(m for m in map(self._from_row, rows) if m is not None)
        return out

    def delete(self, project: str, model: str) -> None:
        """Delete a fine-tune (its weights too, when they live under models_dir)."""
        row = self._row(project, model)
        if row is None:
            if self.registry.find(model) is not None:
                raise PermissionDenied(
                    f"'{model}' is a base model and cannot be deleted; only your project's "
                    "fine-tuned models can.",
                    param="model",
                    code="model_not_deletable",
                )
            raise model_not_found(model)
        with self.db.begin() as s:
            obj = s.get(FineTunedModelRow, model)
            if obj is not None:
                s.delete(obj)
        path = Path(row.path).resolve()
        if self.models_dir.resolve() in path.parents:
            shutil.rmtree(path, ignore_errors=True)
