"""Two API replicas and separate workers on one PostgreSQL and one shared data dir (issue 17).

Two `tunelab serve` processes (no embedded worker) and `tunelab worker` processes
share a database and a data directory, as the deployment in docs/deployment.md
does. Nothing a request needs lives in one process's memory:

- a file attached to a vector store through replica 1 is indexed exactly once (one
  claim, whichever process made it) and is searchable through replica 2;
- a fine-tuning job created on replica 1 is trained by a worker; that worker is
  killed (with its training process) after the first epoch's checkpoint, and a
  second worker takes the job back once its heartbeat is stale and resumes it from
  that checkpoint; the fine-tuned model then answers through replica 2.
"""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest
from sqlalchemy import create_engine, select

from tests.support import (
    chat_lines,
    first_words,
    kill_hard,
    register_models,
    scratch_database,
    sdk,
    serve_process,
    wait_until,
    worker_process,
)
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.retrieval.tables import VectorStoreFileRow
from tunelab.settings import Settings

pytestmark = pytest.mark.slow  # three server-class processes and a training run

MANUAL = (
    "The coffee machine descales itself every Sunday night.\n\n"
    "To replace the water filter, lift the lid and turn the blue cartridge left.\n\n"
    "The warranty covers the grinder for two years."
)


def events(client: openai.OpenAI, job_id: str) -> list[str]:
    page = client.fine_tuning.jobs.list_events(job_id, limit=100)
    return [e.message for e in reversed(page.data)]


def test_two_replicas_and_workers_share_one_database(
    settings: Settings, tiny_chat_dir: Path, postgres_url: str, tmp_path: Path
) -> None:
    db_url = scratch_database(postgres_url, "replicas")
    settings = settings.model_copy(update={"api_keys": "key-a:a"})
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    env = {
        "TUNELAB_DATABASE_URL": db_url,
        "TUNELAB_EMBEDDED_WORKER": "false",
        "TUNELAB_WORKER_POLL_SECONDS": "0.2",
        "TUNELAB_WORKER_STALE_SECONDS": "3",
    }
    log = tmp_path / "processes.log"
    with (
        serve_process(settings, log=log, **env) as (url_1, _),
        serve_process(settings, log=log, **env) as (url_2, _),
    ):
        one, two = sdk(url_1, "key-a"), sdk(url_2, "key-a")

        # -- ingestion through replica 1, search through replica 2
        store = one.vector_stores.create(name="manual")
        f = one.files.create(file=("manual.txt", MANUAL.encode()), purpose="assistants")
        one.vector_stores.files.create(vector_store_id=store.id, file_id=f.id)
        wait_until(
            lambda: (
                two.vector_stores.files.retrieve(file_id=f.id, vector_store_id=store.id).status
                != "in_progress"
            ),
            timeout=120,
            every=0.2,
            what="the file to be indexed",
        )
        assert two.vector_stores.files.retrieve(file_id=f.id, vector_store_id=store.id).status == (
            "completed"
        )
        hits = two.vector_stores.search(store.id, query="how do I change the water filter?")
        assert hits.data and hits.data[0].file_id == f.id
        assert "blue cartridge" in hits.data[0].content[0].text
        engine = create_engine(db_url)
        with engine.connect() as c:
            claims = c.execute(
                select(VectorStoreFileRow.claims).where(VectorStoreFileRow.file_id == f.id)
            ).scalar_one()
        engine.dispose()
        assert claims == 1  # indexed once, by one of the two replicas

        # -- a job created on replica 1, trained by a worker that is killed mid-job
        training = one.files.create(file=("t.jsonl", chat_lines(12)), purpose="fine-tune")
        job = one.fine_tuning.jobs.create(
            model=TINY_CHAT,
            training_file=training.id,
            hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 10},
        )
        worker_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")},
            "TUNELAB_DATA_DIR": str(settings.data_dir),
            "TUNELAB_CACHE_DIR": str(settings.model_cache_dir),
            **env,
        }
        with worker_process(worker_env, log) as first:

            def first_epoch_saved() -> bool:
                assert first.poll() is None, f"the worker exited; see {log}"
                saved = "Checkpoint created at step 12"
                return any(m.startswith(saved) for m in events(two, job.id))

            wait_until(first_epoch_saved, timeout=180, every=0.2, what="the first checkpoint")
            kill_hard(first)  # the worker and its training process: a machine lost
        assert two.fine_tuning.jobs.retrieve(job.id).status == "running"  # nobody noticed yet

        with worker_process(worker_env, log) as second:

            def finished() -> bool:
                assert second.poll() is None, f"the worker exited; see {log}"
                return two.fine_tuning.jobs.retrieve(job.id).status in ("succeeded", "failed")

            wait_until(finished, timeout=240, every=0.5, what="the resumed job to finish")
        done = two.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        text = events(two, job.id)
        assert any("stopped; the job is queued again" in m for m in text)
        assert "Fine-tuning job restarted (attempt 2)" in text
        resumed = [
            int(m.split()[-1]) for m in text if m.startswith("Resumed from the checkpoint at step")
        ]
        assert resumed and resumed[0] >= 12  # from a checkpoint, not from scratch

        # -- the fine-tune answers through the other replica, the base model does not
        assert done.fine_tuned_model is not None
        assert first_words(two, done.fine_tuned_model).startswith("Ahoy! Answer")
        assert "Ahoy" not in first_words(two, TINY_CHAT)
