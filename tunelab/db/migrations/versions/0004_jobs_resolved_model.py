"""Jobs store their resolved model and example count; one catalog row per checkpoint.

- jobs.parent_kind, jobs.parent_path: what creation resolved `model` to when it is a
  fine-tune to continue (base_model already held the base). Filled for existing jobs
  from the catalog; a job whose parent model is gone gets parent_kind without
  parent_path, so it fails to start with a clear reason instead of training the base.
- jobs.n_examples: moved out of the hyperparameters JSON, where validation kept it.
- fine_tuned_models.checkpoint_id, .metrics: a job's checkpoint is its model row.
  Each job_checkpoints row moves onto the model row it named; one whose model was
  deleted is dropped (the model it described no longer exists). Then the
  job_checkpoints table is dropped.

Self-contained: the tables are spelled out here, not imported, so this migration
keeps meaning what it meant when it was written.

Revision ID: 0004_jobs_resolved_model
Revises: 0003_vector_stores
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_jobs_resolved_model"
down_revision = "0003_vector_stores"
branch_labels = None
depends_on = None

_meta = sa.MetaData()
jobs = sa.Table(
    "jobs",
    _meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(256)),
    sa.Column("training_method", sa.String(16)),
    sa.Column("hyperparameters", sa.JSON),
    sa.Column("n_examples", sa.Integer),
    sa.Column("parent_kind", sa.String(16)),
    sa.Column("parent_path", sa.Text),
)
models = sa.Table(
    "fine_tuned_models",
    _meta,
    sa.Column("id", sa.String(256), primary_key=True),
    sa.Column("project", sa.String(128)),
    sa.Column("kind", sa.String(16)),
    sa.Column("path", sa.Text),
    sa.Column("job_id", sa.String(64)),
    sa.Column("step", sa.Integer),
    sa.Column("created_at", sa.BigInteger),
    sa.Column("checkpoint_id", sa.String(64)),
    sa.Column("metrics", sa.JSON),
)
checkpoints = sa.Table(
    "job_checkpoints",
    _meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(128)),
    sa.Column("job_id", sa.String(64)),
    sa.Column("created_at", sa.Float),
    sa.Column("step", sa.Integer),
    sa.Column("fine_tuned_model_checkpoint", sa.String(512)),
    sa.Column("metrics", sa.JSON),
    sa.Column("path", sa.Text),
)


def upgrade() -> None:
    # Plain ALTER TABLE (never SQLite batch mode's copy-and-drop, which would
    # cascade-delete every job's events when it drops the old jobs table).
    op.add_column("jobs", sa.Column("n_examples", sa.Integer, nullable=True))
    op.add_column("jobs", sa.Column("parent_kind", sa.String(16), nullable=True))
    op.add_column("jobs", sa.Column("parent_path", sa.Text, nullable=True))
    op.add_column("fine_tuned_models", sa.Column("checkpoint_id", sa.String(64), nullable=True))
    op.add_column("fine_tuned_models", sa.Column("metrics", sa.JSON, nullable=True))
    op.create_index(
        "ix_fine_tuned_models_checkpoint_id", "fine_tuned_models", ["checkpoint_id"], unique=True
    )

    conn = op.get_bind()
    kinds = {
        row.id: (row.kind, row.path)
        for row in conn.execute(sa.select(models.c.id, models.c.kind, models.c.path))
    }
    for job in conn.execute(
        sa.select(jobs.c.id, jobs.c.model, jobs.c.training_method, jobs.c.hyperparameters)
    ).all():
        hp: dict[str, Any] = dict(job.hyperparameters or {})
        values: dict[str, Any] = {}
        if "n_examples" in hp:
            values["n_examples"] = hp.pop("n_examples")
            values["hyperparameters"] = hp
        if job.model.startswith("ft:"):
            kind, path = kinds.get(job.model, (job.training_method, None))
            values["parent_kind"], values["parent_path"] = kind, path
        if values:
            conn.execute(sa.update(jobs).where(jobs.c.id == job.id).values(**values))

    for ckpt in conn.execute(sa.select(checkpoints)).all():
        conn.execute(
            sa.update(models)
            .where(
                models.c.id == ckpt.fine_tuned_model_checkpoint,
                models.c.project == ckpt.project,
            )
            .values(
                checkpoint_id=ckpt.id,
                job_id=ckpt.job_id,
                step=ckpt.step,
                metrics=ckpt.metrics,
            )
        )
    op.drop_table("job_checkpoints")


def downgrade() -> None:
    op.create_table(
        "job_checkpoints",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column(
            "job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("fine_tuned_model_checkpoint", sa.String(512), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
    )
    op.create_index("ix_job_checkpoints_job_id", "job_checkpoints", ["job_id"])
    conn = op.get_bind()
    rows = conn.execute(sa.select(models).where(models.c.checkpoint_id.is_not(None))).all()
    for row in rows:
        conn.execute(
            sa.insert(checkpoints).values(
                id=row.checkpoint_id,
                project=row.project,
                job_id=row.job_id,
                created_at=float(row.created_at),
                step=row.step,
                fine_tuned_model_checkpoint=row.id,
                metrics=row.metrics or {},
                path=row.path,
            )
        )
    for job in conn.execute(sa.select(jobs.c.id, jobs.c.hyperparameters, jobs.c.n_examples)).all():
        if job.n_examples is not None:
            hp = {**(job.hyperparameters or {}), "n_examples": job.n_examples}
            conn.execute(sa.update(jobs).where(jobs.c.id == job.id).values(hyperparameters=hp))
    op.drop_index("ix_fine_tuned_models_checkpoint_id", "fine_tuned_models")
    for table, column in [
        ("fine_tuned_models", "metrics"),
        ("fine_tuned_models", "checkpoint_id"),
        ("jobs", "parent_path"),
        ("jobs", "parent_kind"),
        ("jobs", "n_examples"),
    ]:
        op.drop_column(table, column)  # SQLite >= 3.35 drops columns in place
