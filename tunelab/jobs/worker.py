"""The worker: turns queued jobs into training processes and their output into DB rows.

The jobs table is the queue. Each `tick()`:
  1. re-queues (or fails) jobs whose worker stopped heart-beating (crash recovery);
  2. supervises the job it is running: copies new lines of the child's events.jsonl
     into job_events, registers each checkpoint in the catalog (so it is callable at
     once), relays cancel/pause from the DB to the child, heart-beats, and on exit
     writes the results CSV and the final status;
  3. otherwise validates one job's files, or claims one queued job and spawns
     `python -m tunelab.training JOB_DIR` for it.

Claims are one conditional UPDATE (`... WHERE status='queued' AND worker_id IS NULL`),
atomic on SQLite and PostgreSQL alike, so two workers never take the same job.
The training process runs in its own session: the API and this thread stay
responsive, and cancel is a signal.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

import tunelab
from tunelab.db.base import Database
from tunelab.errors import NotFound
from tunelab.files import FileStore
from tunelab.ids import random_token
from tunelab.jobs import staging
from tunelab.jobs.recovery import recover_stale
from tunelab.jobs.results import metrics_data, metrics_message, results_csv
from tunelab.jobs.service import add_event, final_model_name, model_name
from tunelab.jobs.tables import Job, JobCheckpoint
from tunelab.models.catalog import Catalog
from tunelab.settings import Settings
from tunelab.training.events import EVENTS_FILE, read_events, write_control

log = logging.getLogger("tunelab.worker")

KILL_AFTER_S = 30.0  # a child that ignores cancel/pause this long is killed


@dataclass
class Running:
    job_id: str
    project: str
    proc: subprocess.Popen[bytes]
    job_dir: Path
    offset: int = 0
    stopping: str | None = None  # "cancel" | "pause" once requested
    stop_sent: float = 0.0
    outcome: dict[str, Any] = field(default_factory=dict)  # the done/paused/error event


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        files: FileStore,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.files = files
        self.id = worker_id or f"{os.uname().nodename}:{os.getpid()}:{random_token(6)}"
        self.current: Running | None = None

    # -- the loop

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.tick()
            except Exception:  # a database hiccup must not end the worker; the next tick retries
                log.exception("worker tick failed")
                busy = False
            if not busy:
                stop.wait(self.settings.worker_poll_seconds)
            else:
                stop.wait(min(0.2, self.settings.worker_poll_seconds))
        self.shutdown()

    def tick(self) -> bool:
        """One round of work; True while a job is being trained."""
        self.recover_stale()
        if self.current is not None:
            self._supervise(self.current)
            return True
        return self._validate_one() or self._claim_and_start()

    def shutdown(self) -> None:
        """Stop our child with a checkpoint and hand its job back to the queue."""
        cur = self.current
        if cur is None:
            return
        write_control(cur.job_dir, "pause")
        try:
            cur.proc.wait(timeout=KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            cur.proc.kill()
            cur.proc.wait()
        self._drain(cur)
        with self.db.begin() as s:
            job = s.get(Job, cur.job_id)
            if job is not None and job.worker_id == self.id:
                if job.status == "running":
                    job.status = "queued"
                    add_event(
                        s,
                        job,
                        "The worker shut down; the job is queued and resumes from its last checkpoint",
                    )
                job.worker_id, job.pid = None, None
        self.current = None

    # -- recovery

    def recover_stale(self) -> None:
        recover_stale(self.db, self.id, self.settings.worker_stale_seconds)

    # -- validating_files -> queued | failed

    def _validate_one(self) -> bool:
        job_id = self.claim("validating_files", "validating_files")
        if job_id is None:
            return False
        with self.db() as s:
            job = s.get(Job, job_id)
        assert job is not None
        verdict = staging.validate(self.files, job)
        with self.db.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.worker_id = None
            if job.status != "validating_files":  # cancelled meanwhile
                return True
            add_event(s, job, verdict.started_message)
            if verdict.error is not None:
                job.status, job.error = "failed", verdict.error
                add_event(s, job, verdict.error["message"], level="error")
            else:
                job.status, job.hyperparameters = "queued", verdict.hyperparameters
                add_event(s, job, "Files validated, moving job to queued state")
        return True

    # -- queued -> running

    def claim(self, status: str, to: str) -> str | None:
        """Atomically take the oldest unheld job in `status`; its id, or None."""
        with self.db() as s:
            candidates = (
                s.execute(
                    select(Job.id)
                    .where(Job.status == status, Job.worker_id.is_(None))
                    .order_by(Job.created_at)
                    .limit(5)
                )
                .scalars()
                .all()
            )
        for job_id in candidates:
            with self.db.begin() as s:
                values: dict[str, Any] = {
                    "status": to,
                    "worker_id": self.id,
                    "heartbeat_at": time.time(),
                }
                if to == "running":
                    values["attempts"] = Job.attempts + 1
                result = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == status, Job.worker_id.is_(None))
                    .values(**values)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    return job_id
        return None

    def _claim_and_start(self) -> bool:
        job_id = self.claim("queued", "running")
        if job_id is None:
            return False
        job_dir = self.settings.jobs_dir / job_id
        try:
            with self.db() as s:
                job = s.get(Job, job_id)
                assert job is not None
            staging.write_config(self.settings, self.catalog, self.files, job, job_dir)
            proc = self._spawn(job_dir)
        except (
            Exception
        ) as e:  # a job that cannot start fails with the reason, the worker carries on
            self._fail(job_id, f"The job could not start: {type(e).__name__}: {e}")
            return True
        self.current = Running(job_id, job.project, proc, job_dir)
        with self.db.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.pid = proc.pid
            first = job.attempts <= 1
            add_event(
                s,
                job,
                "Fine-tuning job started"
                if first
                else f"Fine-tuning job restarted (attempt {job.attempts})",
            )
        return True

    def _spawn(self, job_dir: Path) -> subprocess.Popen[bytes]:
        root = str(Path(tunelab.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # Idle OpenMP threads sleep instead of spinning: when the cores are shared
        # (the server, other jobs), spinning threads made training steps ~4x slower
        # on the 2-core CI machine. A user's own OMP_WAIT_POLICY wins.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        log = open(job_dir / "train.log", "ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "tunelab.training", str(job_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C on the server is not a cancel
            )
        finally:
            log.close()

    # -- running

    def _supervise(self, cur: Running) -> None:
        self._drain(cur)
        with self.db.begin() as s:
            job = s.get(Job, cur.job_id)
            if job is None or job.worker_id != self.id:
                # Someone else recovered this job (we were too slow to heart-beat): let go.
                self._kill(cur)
                self.current = None
                return
            job.heartbeat_at = time.time()
            status = job.status
        if cur.stopping is None and status == "cancelled":
            cur.stopping, cur.stop_sent = "cancel", time.monotonic()
            cur.proc.send_signal(signal.SIGTERM)
        elif cur.stopping is None and status in ("paused", "queued"):
            cur.stopping, cur.stop_sent = "pause", time.monotonic()
            write_control(cur.job_dir, "pause")
        elif cur.stopping and time.monotonic() - cur.stop_sent > KILL_AFTER_S:
            cur.proc.kill()
        code = cur.proc.poll()
        if code is not None:
            self._drain(cur)
            self._finish(cur, code)
            self.current = None

    def _kill(self, cur: Running) -> None:
        cur.proc.kill()
        cur.proc.wait()

    def _drain(self, cur: Running) -> None:
        events, cur.offset = read_events(cur.job_dir / EVENTS_FILE, cur.offset)
        for event in events:
            if event["type"] in ("done", "paused", "error"):
                cur.outcome = event
            self._ingest(cur, event)

    def _ingest(self, cur: Running, ev: dict[str, Any]) -> None:
        kind = ev["type"]
        with self.db() as s:
            job = s.get(Job, cur.job_id)
        assert job is not None
        if kind == "checkpoint":
            self._checkpoint(job, ev)
            return
        if kind == "checkpoint_removed":
            self._checkpoint_removed(job, ev["step"])
            return
        with self.db.begin() as s:
            job = s.get(Job, cur.job_id)
            assert job is not None
            if kind == "message":
                add_event(s, job, ev["message"], level=ev.get("level", "info"), at=ev["time"])
            elif kind == "metrics":
                add_event(
                    s,
                    job,
                    metrics_message(ev),
                    type_="metrics",
                    data=metrics_data(ev),
                    at=ev["time"],
                )
                job.trained_tokens = ev["trained_tokens"]
                per_step = ev["elapsed_s"] / max(1, ev["steps_this_run"])
                job.estimated_finish = time.time() + per_step * (ev["total_steps"] - ev["step"])
            elif kind == "paused":
                add_event(
                    s, job, f"Training paused at step {ev['step']}; resuming continues from there"
                )

    def _checkpoint(self, job: Job, ev: dict[str, Any]) -> None:
        metrics = ev.get("metrics") or {}
        final = metrics.get("step") == metrics.get("total_steps")
        name = (
            final_model_name(job)
            if final
            else f"{model_name(job, random_token(8))}:ckpt-step-{ev['step']}"
        )
        self.catalog.register_fine_tuned(
            project=job.project,
            model_id=name,
            base_model=job.base_model,
            path=Path(ev["path"]),
            kind="full" if job.training_method == "full" else "lora",
            job_id=job.id,
            step=ev["step"],
        )
        with self.db.begin() as s:
            s.add(
                JobCheckpoint(
                    id="ftckpt_" + random_token(24),
                    project=job.project,
                    job_id=job.id,
                    created_at=ev["time"],
                    step=ev["step"],
                    fine_tuned_model_checkpoint=name,
                    metrics={k: v for k, v in metrics.items() if k != "total_steps"},
                    path=ev["path"],
                )
            )
            if not final:
                add_event(
                    s, job, f"Checkpoint created at step {ev['step']} with Snapshot ID: {name}"
                )

    def _checkpoint_removed(self, job: Job, step: int) -> None:
        with self.db.begin() as s:
            rows = (
                s.execute(
                    select(JobCheckpoint).where(
                        JobCheckpoint.job_id == job.id, JobCheckpoint.step == step
                    )
                )
                .scalars()
                .all()
            )
            names = [r.fine_tuned_model_checkpoint for r in rows]
            for r in rows:
                s.delete(r)
        for name in names:
            try:
                self.catalog.delete(job.project, name)
            except NotFound:
                pass

    # -- exit

    def _finish(self, cur: Running, code: int) -> None:
        kind = cur.outcome.get("type")
        if kind == "done":
            self._succeed(cur)
            return
        with self.db.begin() as s:
            job = s.get(Job, cur.job_id)
            assert job is not None
            job.worker_id, job.pid, job.estimated_finish = None, None, None
            if job.status != "running":
                return  # cancelled or paused as asked
            if kind == "paused":  # paused on shutdown of a previous owner: back to the queue
                job.status = "queued"
                return
        reason = cur.outcome.get("message") or f"the training process exited with code {code}"
        self._fail(cur.job_id, f"Training failed: {reason}")

    def _succeed(self, cur: Running) -> None:
        with self.db() as s:
            job = s.get(Job, cur.job_id)
        assert job is not None
        name = final_model_name(job)
        result = self.files.create_from_bytes(
            project=job.project,
            filename=f"{job.id}_results.csv",
            purpose="fine-tune-results",
            data=results_csv(self.db, job.id).encode(),
        )
        with self.db.begin() as s:
            done = s.execute(
                update(Job)
                .where(Job.id == cur.job_id, Job.status == "running")
                .values(
                    status="succeeded",
                    fine_tuned_model=name,
                    finished_at=time.time(),
                    trained_tokens=cur.outcome["trained_tokens"],
                    result_files=[result.id],
                    worker_id=None,
                    pid=None,
                    estimated_finish=None,
                )
            )
            job = s.get(Job, cur.job_id)
            assert job is not None
            if done.rowcount != 1:  # type: ignore[attr-defined]
                job.worker_id, job.pid = None, None
                return
            add_event(s, job, f"New fine-tuned model created: {name}")
            add_event(s, job, "The job has successfully completed")

    def _fail(self, job_id: str, message: str) -> None:
        with self.db.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.worker_id, job.pid, job.estimated_finish = None, None, None
            if job.status in ("succeeded", "failed", "cancelled"):
                return
            job.status = "failed"
            job.error = {"code": "server_error", "message": message, "param": None}
            add_event(s, job, message, level="error")


@contextmanager
def background_worker(worker: Worker) -> Iterator[Worker]:
    """Run `worker` on a thread for the life of the block (the one embedded in `serve`)."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="tunelab-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=KILL_AFTER_S + 10)
