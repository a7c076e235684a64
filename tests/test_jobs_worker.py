"""The worker against a real database: atomic claims, state transitions, crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support import FakeClock, chat_lines, wait_until
from tests.tiny_models import TINY_CHAT
from tunelab.errors import InvalidRequest
from tunelab.jobs import staging, states
from tunelab.jobs.tables import Job, JobEvent
from tunelab.jobs.worker import Worker
from tunelab.protocol.fine_tuning import JobCreate
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.unit


@pytest.fixture
def rt(tiny_settings: Settings) -> Any:
    r = build_runtime(
        tiny_settings.model_copy(update={"worker_poll_seconds": 0.1}), embedded_worker=False
    )
    yield r
    r.close()


def new_job(rt: Runtime, n_epochs: int = 1, n: int = 12) -> str:
    f = rt.files.create_from_bytes(
        project="default", filename="t.jsonl", purpose="fine-tune", data=chat_lines(n)
    )
    req = JobCreate(
        model=TINY_CHAT,
        training_file=f.id,
        hyperparameters={"n_epochs": n_epochs, "batch_size": 1, "learning_rate_multiplier": 10},  # type: ignore[arg-type]
    )
    return rt.jobs.create("default", req).id


def job_row(rt: Runtime, job_id: str) -> Job:
    with rt.db() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def messages(rt: Runtime, job_id: str) -> list[str]:
    with rt.db() as s:
        return list(
            s.execute(
                select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
            ).scalars()
        )


def run_until(
    worker: Worker, rt: Runtime, job_id: str, statuses: tuple[str, ...], timeout: float = 120
) -> Job:
    def reached() -> Job | None:
        worker.tick()
        job = job_row(rt, job_id)
        return job if job.status in statuses else None

    return wait_until(reached, timeout=timeout, what=f"job {job_id} to be {statuses}")


def test_two_workers_never_claim_the_same_job(rt: Runtime) -> None:
    job_id = new_job(rt)
    rt.new_worker().tick()  # validating_files -> queued
    assert job_row(rt, job_id).status == "queued"
    workers = [rt.new_worker() for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    won: list[str | None] = [None] * len(workers)

    def race(i: int) -> None:
        barrier.wait()
        won[i] = workers[i].claim(states.START)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w for w in won if w) == [job_id]
    job = job_row(rt, job_id)
    assert job.status == "running" and job.worker_id == workers[won.index(job_id)].id
    assert job.attempts == 1


def test_status_transitions_without_training(rt: Runtime) -> None:
    jobs = rt.jobs
    a = new_job(rt)
    assert job_row(rt, a).status == "validating_files"
    assert jobs.cancel("default", a).status == "cancelled"  # validating_files -> cancelled
    b = new_job(rt)
    rt.new_worker().tick()
    assert job_row(rt, b).status == "queued"
    assert jobs.pause("default", b).status == "paused"  # queued -> paused
    assert jobs.resume("default", b).status == "queued"  # paused -> queued
    assert jobs.cancel("default", b).status == "cancelled"
    with pytest.raises(InvalidRequest) as e:
        jobs.resume("default", b)
    assert e.value.param == "fine_tuning_job_id"
    assert rt.new_worker().tick() is False  # nothing left to do


@pytest.mark.slow
def test_killed_worker_is_recovered_and_the_job_resumes(rt: Runtime, tmp_path: Path) -> None:
    job_id = new_job(rt, n_epochs=3)
    settings = rt.settings
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TUNELAB_DATA_DIR": str(settings.data_dir),
        "TUNELAB_CACHE_DIR": str(settings.model_cache_dir),
        "TUNELAB_WORKER_POLL_SECONDS": "0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tunelab.cli.main import main; main()", "worker"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:

        def first_epoch_saved() -> bool:
            assert proc.poll() is None, "the worker process exited"
            return any(m.startswith("Checkpoint created at step 12") for m in messages(rt, job_id))

        wait_until(first_epoch_saved, timeout=120, every=0.1, what="the first epoch's checkpoint")
        child = job_row(rt, job_id).pid
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert job_row(rt, job_id).status == "running"  # nobody has noticed yet

    # The rescuer's clock runs ahead instead of the test sleeping until the dead
    # worker's heartbeat is stale.
    clock = FakeClock()
    rescuer = Worker(rt.db, rt.settings, rt.catalog, rt.files, clock=clock)
    rescuer.recover_stale()
    assert job_row(rt, job_id).status == "running"  # its heartbeat is recent
    clock.advance(rt.settings.worker_stale_seconds + 1)
    rescuer.recover_stale()
    assert job_row(rt, job_id).status == "queued"
    assert child is not None
    _wait_gone(child)  # the orphaned training process stopped by itself
    done = run_until(rescuer, rt, job_id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    text = messages(rt, job_id)
    assert any("stopped; the job is queued again" in m for m in text)
    assert "Fine-tuning job restarted (attempt 2)" in text
    # The orphaned child may save one more epoch's checkpoint before it notices its
    # worker is gone; the job resumes from the newest one.
    resumed = [
        int(m.split()[-1]) for m in text if m.startswith("Resumed from the checkpoint at step")
    ]
    assert resumed and resumed[0] >= 12


def _wait_gone(pid: int, timeout: float = 60) -> None:
    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"  # exited, waiting to be reaped by init

    wait_until(gone, timeout=timeout, every=0.2, what=f"training process {pid} to exit")


def test_claims_are_atomic_on_postgres(tiny_settings: Settings, postgres_url: str) -> None:
    settings = tiny_settings.model_copy(update={"database_url": postgres_url})
    rt = build_runtime(settings, embedded_worker=False)
    try:
        test_two_workers_never_claim_the_same_job(rt)
        test_status_transitions_without_training(rt)
    finally:
        rt.close()


def test_the_model_resolved_at_creation_is_what_trains(rt: Runtime, tmp_path: Path) -> None:
    parent_dir = tmp_path / "parent-adapter"  # outside models_dir: deleting the model keeps it
    parent_dir.mkdir()
    parent = "ft:tiny-chat:default:parent:abcd1234"
    rt.catalog.register_fine_tuned(
        project="default", model_id=parent, base_model=TINY_CHAT, path=parent_dir, kind="lora"
    )
    f = rt.files.create_from_bytes(
        project="default", filename="t.jsonl", purpose="fine-tune", data=chat_lines(12)
    )
    job_id = rt.jobs.create("default", JobCreate(model=parent, training_file=f.id)).id
    job = job_row(rt, job_id)
    assert (job.base_model, job.parent_kind, job.parent_path) == (
        TINY_CHAT,
        "lora",
        str(parent_dir),
    )
    rt.new_worker().tick()  # validation counts the examples into their own column
    job = job_row(rt, job_id)
    assert job.n_examples == 12 and "n_examples" not in job.hyperparameters

    # The name is gone from the catalog; the job still trains what it was created with.
    rt.catalog.delete("default", parent)
    cfg = staging.write_config(rt.settings, rt.catalog, rt.files, job, tmp_path / "job")
    assert cfg.init_adapter == str(parent_dir) and cfg.base_model == TINY_CHAT

    # Without the weights it cannot start, and says why.
    parent_dir.rmdir()
    rt.new_worker().tick()
    job = job_row(rt, job_id)
    assert job.status == "failed" and job.error is not None
    assert f"the weights of {parent} no longer exist" in job.error["message"]
    assert job.worker_id is None
