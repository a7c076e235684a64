"""The worker against a real database: atomic claims, state transitions, crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.test_jobs_api import chat_lines
from tests.tiny_models import TINY_CHAT
from tunelab.errors import InvalidRequest
from tunelab.jobs.tables import Job, JobEvent
from tunelab.jobs.worker import Worker
from tunelab.protocol.fine_tuning import JobCreate
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rt(tiny_settings: Settings) -> Any:
    s = build_runtime(
        tiny_settings.model_copy(update={"worker_poll_seconds": 0.1, "worker_stale_seconds": 2.0}),
        embedded_worker=False,
    )
    yield s
    s.close()


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
    deadline = time.monotonic() + timeout
    while (job := job_row(rt, job_id)).status not in statuses:
        assert time.monotonic() < deadline, f"stuck in {job.status}"
        worker.tick()
        time.sleep(0.05)
    return job


def test_two_workers_never_claim_the_same_job(rt: Runtime) -> None:
    job_id = new_job(rt)
    rt.new_worker().tick()  # validating_files -> queued
    assert job_row(rt, job_id).status == "queued"
    workers = [rt.new_worker() for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    won: list[str | None] = [None] * len(workers)

    def race(i: int) -> None:
        barrier.wait()
        won[i] = workers[i].claim("queued", "running")

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
        deadline = time.monotonic() + 120
        while not any(m.startswith("Checkpoint created at step 12") for m in messages(rt, job_id)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        child = job_row(rt, job_id).pid
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert job_row(rt, job_id).status == "running"  # nobody has noticed yet

    rescuer = rt.new_worker()
    time.sleep(rt.settings.worker_stale_seconds + 0.5)
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":  # exited, waiting to be reaped by init
            return
        time.sleep(0.2)
    raise AssertionError(f"training process {pid} still alive")


def test_claims_are_atomic_on_postgres(tiny_settings: Settings, postgres_url: str) -> None:
    settings = tiny_settings.model_copy(update={"database_url": postgres_url})
    rt = build_runtime(settings, embedded_worker=False)
    try:
        test_two_workers_never_claim_the_same_job(rt)
        test_status_transitions_without_training(rt)
    finally:
        rt.close()
