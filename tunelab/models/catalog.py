"""The catalog: every model a project can call — base models from the registry and
the project's own fine-tunes (final models and checkpoints) from the database.

Fine-tunes are registered the moment a job writes them, so they answer at once
and survive restarts; another project's fine-tune does not exist for you (404).
A job's checkpoints are catalog rows too (`add_job_checkpoint`), one row per
checkpoint: see `tunelab.db.tables.FineTunedModelRow` for why.

Weights are named relative to the models dir (tunelab.models.weights), so each
replica finds them under its own data dir, fetched from the blob store when needed.

Names are never reused: a new row is inserted, never merged over an existing one,
and a job's checkpoint draws a fresh random id8 until its name is free, so two
jobs can never end up sharing (or overwriting) one model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tunelab.blobs import BlobStore
from tunelab.db.base import Database, now
from tunelab.db.pagination import paginate
from tunelab.db.tables import FineTunedModelRow
from tunelab.errors import NotFound, PermissionDenied, model_not_found
from tunelab.ids import new_id, random_token
from tunelab.models.registry import ModelSpec, Registry
from tunelab.models.weights import Weights


@dataclass(frozen=True)
class ResolvedModel:
    id: str
    base: ModelSpec
    kind: Literal["base", "lora", "full"]
    # The adapter or full-weights directory of a fine-tune on this machine (it may
    # still have to be fetched: `Catalog.weights.local`).
    path: Path | None = None
    owned_by: str = "tunelab"
    created: int = 0


# Random id8 draws before giving up; with 62**8 names a second draw is already rare.
NAME_ATTEMPTS = 16


class Catalog:
    def __init__(
        self,
        registry: Registry,
        db: Database,
        models_dir: Path,
        *,
        remote: BlobStore | None = None,
        id8: Callable[[], str] = lambda: random_token(8),
    ) -> None:
        """`remote`: the object store fine-tuned weights are published to (None: they
        live in `models_dir`, shared by whoever shares the data dir)."""
        self.registry = registry
        self.db = db
        self.models_dir = models_dir
        self.weights = Weights(models_dir, remote)
        self._id8 = id8

    def register_fine_tuned(
        self,
        *,
        project: str,
        model_id: str,
        base_model: str,
        path: Path,
        kind: Literal["lora", "full"],
    ) -> None:
        """Add a fine-tune under a name of the caller's choosing (ValueError if taken)."""
        row = FineTunedModelRow(
            id=model_id,
            project=project,
            base_model=base_model,
            kind=kind,
            path=self.weights.ref(path),
            created_at=now(),
        )
        if not self._insert(row):
            raise ValueError(f"a model named {model_id!r} exists already")

    def add_job_checkpoint(
        self,
        *,
        project: str,
        job_id: str,
        step: int,
        base_model: str,
        kind: Literal["lora", "full"],
        path: Path,
        metrics: dict[str, float] | None,
        created_at: int,
        name: Callable[[str], str],
    ) -> str:
        """Register the checkpoint of `job_id` at `step` as a model; its model name.

        `name(id8)` spells the name for a random id8; a name that is taken (by any
        job, in any project) is never overwritten: another id8 is drawn. A step the
        job registered before keeps its name.
        """
        for _ in range(NAME_ATTEMPTS):
            existing = self.job_checkpoint(job_id, step)
            if existing is not None:
                return existing
            row = FineTunedModelRow(
                id=name(self._id8()),
                project=project,
                base_model=base_model,
                kind=kind,
                path=self.weights.ref(path),
                job_id=job_id,
                step=step,
                created_at=created_at,
                checkpoint_id=new_id("ftckpt_"),
                metrics=metrics,
            )
            if self._insert(row):
                return row.id
        raise RuntimeError(f"no free model name after {NAME_ATTEMPTS} random draws")

    def job_checkpoint(self, job_id: str, step: int) -> str | None:
        """The model name of a job's checkpoint at `step`, if it is registered."""
        with self.db() as s:
            return s.execute(
                select(FineTunedModelRow.id).where(
                    FineTunedModelRow.job_id == job_id,
                    FineTunedModelRow.step == step,
                    FineTunedModelRow.checkpoint_id.is_not(None),
                )
            ).scalar_one_or_none()

    def job_checkpoints(
        self, project: str, job_id: str, *, after: str | None, limit: int
    ) -> tuple[list[FineTunedModelRow], bool]:
        """A page of a job's checkpoints, newest (highest step) first, after a checkpoint id."""
        stmt = select(FineTunedModelRow).where(
            FineTunedModelRow.project == project,
            FineTunedModelRow.job_id == job_id,
            FineTunedModelRow.checkpoint_id.is_not(None),
        )
        with self.db() as s:
            return paginate(
                s,
                stmt,
                FineTunedModelRow,
                after=after,
                limit=limit,
                id_col="checkpoint_id",
                created_col="step",
            )

    def remove_job_checkpoint(self, project: str, job_id: str, step: int) -> None:
        """Unregister a pruned checkpoint (and delete its weights if they remain)."""
        name = self.job_checkpoint(job_id, step)
        if name is not None:
            try:
                self.delete(project, name)
            except NotFound:  # deleted by its owner meanwhile
                pass

    def _insert(self, row: FineTunedModelRow) -> bool:
        """Insert a new row; False when its name (or checkpoint id) is taken."""
        try:
            with self.db.begin() as s:
                s.add(row)
        except IntegrityError:
            return False
        return True

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
            path=self.weights.path(row.path),
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
        """Delete a fine-tune (its weights too, when they live under models_dir: this
        machine's copy and the published one)."""
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
        self.weights.remove(self.weights.path(row.path))
