"""Migration 0004 carries a 0003 database's jobs and checkpoints over, and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from tests.support import scratch_database
from tunelab.db.base import MIGRATIONS_DIR

pytestmark = pytest.mark.unit


def alembic(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


JOB_COLUMNS = (
    "id, project, created_at, status, model, base_model, training_file, hyperparameters, "
    "training_method, seed, result_files, attempts"
)


def _job(job_id: str, model: str, hp: dict[str, Any], method: str = "lora") -> dict[str, Any]:
    return {
        "id": job_id,
        "project": "p",
        "created_at": 1.0,
        "status": "succeeded",
        "model": model,
        "base_model": "tiny-chat",
        "training_file": "file-1",
        "hyperparameters": json.dumps(hp),
        "training_method": method,
        "seed": 1,
        "result_files": "[]",
        "attempts": 1,
    }


def _rows(conn: Any, sql: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(text(sql))]


def _json(value: Any) -> Any:
    """A JSON column's value: SQLite hands back text, PostgreSQL the decoded object."""
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return scratch_database(request.getfixturevalue("postgres_url"), f"mig_{tmp_path.name}")


def test_0004_moves_rows_and_back(empty_db: str) -> None:
    url = empty_db
    command.upgrade(alembic(url), "0003_vector_stores")
    engine = create_engine(url)
    hp = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0, "n_examples": 12}
    with engine.begin() as conn:
        insert_job = text(
            f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (:id, :project, :created_at, :status, "
            ":model, :base_model, :training_file, :hyperparameters, :training_method, :seed, "
            ":result_files, :attempts)"
        )
        conn.execute(insert_job, _job("ftjob-a", "tiny-chat", hp))
        conn.execute(insert_job, _job("ftjob-b", "ft:tiny-chat:p::AAAA1111", hp))
        conn.execute(insert_job, _job("ftjob-c", "ft:tiny-chat:p::GONE0000", hp, "full"))
        conn.execute(
            insert_job,
            _job(
                "ftjob-d",
                "tiny-chat",
                {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
            ),
        )
        for name, step, path in [
            ("ft:tiny-chat:p::AAAA1111:ckpt-step-6", 6, "/m/a/step-6"),
            ("ft:tiny-chat:p::AAAA1111", 12, "/m/a/step-12"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO fine_tuned_models VALUES "
                    "(:id, 'p', 'tiny-chat', 'lora', :path, 'ftjob-a', :step, 100)"
                ),
                {"id": name, "path": path, "step": step},
            )
        for ckpt_id, name, step in [
            ("ftckpt_1", "ft:tiny-chat:p::AAAA1111:ckpt-step-6", 6),
            ("ftckpt_2", "ft:tiny-chat:p::AAAA1111", 12),
            ("ftckpt_3", "ft:tiny-chat:p::DELETED0:ckpt-step-3", 3),  # its model was deleted
        ]:
            conn.execute(
                text(
                    "INSERT INTO job_checkpoints VALUES "
                    "(:id, 'p', 'ftjob-a', 100.5, :step, :name, :metrics, '/m/a')"
                ),
                {"id": ckpt_id, "name": name, "step": step, "metrics": json.dumps({"step": step})},
            )
        conn.execute(
            text(
                "INSERT INTO job_events (id, project, job_id, created_at, level, type, message) "
                "VALUES ('ftevent-1', 'p', 'ftjob-a', 1.0, 'info', 'message', 'kept')"
            )
        )

    command.upgrade(alembic(url), "head")
    with engine.connect() as conn:
        jobs = {r["id"]: r for r in _rows(conn, "SELECT * FROM jobs")}
        models = {r["id"]: r for r in _rows(conn, "SELECT * FROM fine_tuned_models")}
        tables = set(inspect(conn).get_table_names())
        events = _rows(conn, "SELECT message FROM job_events")
    assert jobs["ftjob-a"]["n_examples"] == 12
    assert "n_examples" not in _json(jobs["ftjob-a"]["hyperparameters"])
    assert jobs["ftjob-a"]["parent_kind"] is None and jobs["ftjob-a"]["parent_path"] is None
    assert (jobs["ftjob-b"]["parent_kind"], jobs["ftjob-b"]["parent_path"]) == (
        "lora",
        "/m/a/step-12",
    )
    # Its parent is gone: the job keeps saying so instead of silently training the base.
    assert (jobs["ftjob-c"]["parent_kind"], jobs["ftjob-c"]["parent_path"]) == ("full", None)
    assert jobs["ftjob-d"]["n_examples"] is None  # never validated
    assert _json(jobs["ftjob-d"]["hyperparameters"])["n_epochs"] == "auto"
    final = models["ft:tiny-chat:p::AAAA1111"]
    assert (final["checkpoint_id"], final["step"]) == ("ftckpt_2", 12)
    assert _json(final["metrics"]) == {"step": 12}
    assert models["ft:tiny-chat:p::AAAA1111:ckpt-step-6"]["checkpoint_id"] == "ftckpt_1"
    assert "job_checkpoints" not in tables
    assert events == [{"message": "kept"}]  # altering jobs did not cascade into its events

    command.downgrade(alembic(url), "0003_vector_stores")
    with engine.connect() as conn:
        back = {r["id"]: r for r in _rows(conn, "SELECT * FROM job_checkpoints")}
        jobs = {r["id"]: r for r in _rows(conn, "SELECT * FROM jobs")}
        events = _rows(conn, "SELECT message FROM job_events")
    assert set(back) == {"ftckpt_1", "ftckpt_2"}
    assert back["ftckpt_2"]["fine_tuned_model_checkpoint"] == "ft:tiny-chat:p::AAAA1111"
    assert _json(jobs["ftjob-a"]["hyperparameters"])["n_examples"] == 12
    assert "parent_kind" not in jobs["ftjob-a"]
    assert events == [{"message": "kept"}]
    engine.dispose()
