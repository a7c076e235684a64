"""The worker: turns queued jobs into training processes and their output into DB rows.

The jobs table is the queue. Each `tick()`:
  1. re-queues (or fails) jobs whose worker stopped heart-beating (crash recovery);
  2. supervises the job it is running: copies the child's new events (typed records,
     tunelab.training.events) into job_events, registers each checkpoint in the
     catalog (so it is callable at once), relays cancel/pause from the DB to the
     child, heart-beats, and on exit writes the results CSV and the final status;
  3. otherwise validates one job's files, or claims one queued job and spawns
     `python -m tunelab.training JOB_DIR` for it.

Every status change is a transition of tunelab.jobs.states (claims too: a
conditional UPDATE that only one worker can win). The training process runs in its
own session: the API and this thread stay responsive, and cancel is a signal.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

import tunelab
from tunelab.clock import SYSTEM_CLOCK, Clock
from tunelab.db.base import Database
from tunelab.files import FileStore
from tunelab.ids import random_token
from tunelab.jobs import checkpoints, staging, states
from tunelab.jobs.eventlog import add_event
from tunelab.jobs.recovery import recover_stale
from tunelab.jobs.results import metrics_message, results_csv
from tunelab.jobs.states import Note
from tunelab.jobs.tables import Job
from tunelab.models.catalog import Catalog
from tunelab.settings import Settings
from tunelab.training.events import (
    EVENTS_FILE,
    SUPERVISOR_ENV,
    CheckpointEvent,
    CheckpointRemovedEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    MessageEvent,
    MetricsEvent,
    Outcome,
    PausedEvent,
    read_events,
    write_control,
)

SECRET_ENV = frozenset({"TUNELAB_API_KEYS", "TUNELAB_API_KEY", "TUNELAB_DATABASE_URL"})


def training_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a training process, from the server's.

    The training process reads only its job directory, so it gets none of the
    server's secrets (keys, a database URL that may hold a password): a training
    script or a model's remote code cannot read them from its environment."""
    root = str(Path(tunelab.__file__).resolve().parent.parent)
    env = {k: v for k, v in environ.items() if k not in SECRET_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # Idle OpenMP threads sleep instead of spinning: when the cores are shared
    # (the server, other jobs), spinning threads made training steps ~4x slower
    # on the 2-core CI machine. A user's own OMP_WAIT_POLICY wins.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def torchrun_command(processes: int, extra_args: str, job_dir: Path) -> list[str]:
    """torchrun starting `processes` training processes on this machine for a job: one
    machine by default (`--standalone`), or the rendezvous `extra_args` names."""
    rendezvous = shlex.split(extra_args) or ["--standalone"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={processes}",
        *rendezvous,
        "--module",
        "tunelab.training",
        str(job_dir),
    ]


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
    stop_sent: float = 0.0  # clock.monotonic() when it was
    outcome: Outcome | None = None  # the done/paused/error event, once seen


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        files: FileStore,
        *,
        worker_id: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.files = files
        self.clock = clock
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
            poll = self.settings.worker_poll_seconds
            self.clock.wait(stop, min(0.2, poll) if busy else poll)
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
        note = Note("The worker shut down; the job is queued and resumes from its last checkpoint")
        self._move_or_release(cur.job_id, states.REQUEUE, notes=[note])
        self.current = None

    # -- recovery

    def recover_stale(self) -> None:
        recover_stale(self.db, self.id, self.settings.worker_stale_seconds, self.clock)

    # -- validating_files -> queued | failed

    def _validate_one(self) -> bool:
        job_id = self.claim(states.TAKE_FOR_VALIDATION)
        if job_id is None:
            return False
        with self.db() as s:
            job = s.get(Job, job_id)
        assert job is not None
        verdict = staging.validate(self.files, job)
        started = Note(verdict.started_message)
        if verdict.error is not None:
            self._move_or_release(
                job_id,
                states.INVALID_FILES,
                changes={"error": verdict.error.as_dict()},
                notes=[started, Note(verdict.error.message, level="error")],
            )
        else:
            assert verdict.n_examples is not None
            self._move_or_release(
                job_id,
                states.VALIDATED,
                changes={
                    "hyperparameters": verdict.hyperparameters,
                    "n_examples": verdict.n_examples,
                },
                notes=[
                    started,
                    *(Note(f"Hyperparameter auto: {r}") for r in verdict.reasons),
                    Note("Files validated, moving job to queued state"),
                ],
            )
        return True

    # -- queued -> running

    def claim(self, t: states.Transition) -> str | None:
        """Atomically take the oldest unheld job `t` starts from; its id, or None."""
        assert t.holding == "take", f"{t.name} does not take a job"
        with self.db() as s:
            candidates: list[str] = list(
                s.execute(
                    select(Job.id)
                    .where(Job.status.in_(t.source), Job.worker_id.is_(None))
                    .order_by(Job.created_at)
                    .limit(5)
                ).scalars()
            )
        for job_id in candidates:
            with self.db.begin() as s:
                if states.apply(s, job_id, t, now=self.clock.time(), worker_id=self.id):
                    return job_id
        return None

    def _claim_and_start(self) -> bool:
        job_id = self.claim(states.START)
        if job_id is None:
            return False
        job_dir = self.settings.jobs_dir / job_id
        try:
            with self.db() as s:
                job = s.get(Job, job_id)
                assert job is not None
            staging.write_config(self.settings, self.catalog, self.files, job, job_dir)
            # DPO trains in one process (tunelab.training.distributed covers supervised).
            processes = self.settings.train_processes if job.objective == "supervised" else 1
            proc = self._spawn(job_dir, processes)
        except Exception as e:  # a job that cannot start fails with the reason; the worker goes on
            self._fail(job_id, f"The job could not start: {type(e).__name__}: {e}")
            return True
        self.current = Running(job_id, job.project, proc, job_dir)
        with self.db.begin() as s:
            states.record_pid(s, job_id, self.id, proc.pid)
            job = s.get(Job, job_id, populate_existing=True)
            assert job is not None
            started = (
                "Fine-tuning job started"
                if job.attempts <= 1
                else f"Fine-tuning job restarted (attempt {job.attempts})"
            )
            if processes > 1:
                started += f" on {processes} training processes"
            add_event(s, job, started, at=self.clock.time())
        return True

    def _spawn(self, job_dir: Path, processes: int = 1) -> subprocess.Popen[bytes]:
        env = training_env(os.environ)
        command = [sys.executable, "-m", "tunelab.training", str(job_dir)]
        if processes > 1:
            command = torchrun_command(processes, self.settings.train_torchrun_args, job_dir)
            env[SUPERVISOR_ENV] = str(os.getpid())
        with open(job_dir / "train.log", "ab") as train_log:  # the child keeps its own copy
            return subprocess.Popen(
                command,
                env=env,
                stdout=train_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C on the server is not a cancel
            )

    # -- running

    def _supervise(self, cur: Running) -> None:
        self._drain(cur)
        with self.db.begin() as s:
            held = states.heartbeat(s, cur.job_id, self.id, self.clock.time())
            status = s.execute(select(Job.status).where(Job.id == cur.job_id)).scalar()
        if not held:
            # Someone else recovered this job (we were too slow to heart-beat): let go.
            self._kill(cur)
            self.current = None
            return
        if cur.stopping is None and status == "cancelled":
            cur.stopping, cur.stop_sent = "cancel", self.clock.monotonic()
            cur.proc.send_signal(signal.SIGTERM)
        elif cur.stopping is None and status in ("paused", "queued"):
            cur.stopping, cur.stop_sent = "pause", self.clock.monotonic()
            write_control(cur.job_dir, "pause")
        elif cur.stopping and self.clock.monotonic() - cur.stop_sent > KILL_AFTER_S:
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
            if isinstance(event, PausedEvent | DoneEvent | ErrorEvent):
                cur.outcome = event
            self._ingest(cur, event)

    def _ingest(self, cur: Running, ev: Event) -> None:
        with self.db() as s:
            job = s.get(Job, cur.job_id)
        assert job is not None
        if isinstance(ev, CheckpointEvent):
            self._checkpoint(job, ev)
        elif isinstance(ev, CheckpointRemovedEvent):
            self.catalog.remove_job_checkpoint(job.project, job.id, ev.step)
        elif isinstance(ev, MessageEvent | MetricsEvent | PausedEvent):
            with self.db.begin() as s:
                job = s.get(Job, cur.job_id)
                assert job is not None
                self._log(s, job, ev)
        # Done and error events end the process; _finish acts on them.

    def _log(self, s: Session, job: Job, ev: MessageEvent | MetricsEvent | PausedEvent) -> None:
        if isinstance(ev, MessageEvent):
            add_event(s, job, ev.message, level=ev.level, at=ev.time)
        elif isinstance(ev, MetricsEvent):
            m = ev.metrics
            add_event(s, job, metrics_message(m), type_="metrics", data=m.data(), at=ev.time)
            job.trained_tokens = ev.trained_tokens
            per_step = ev.elapsed_s / max(1, ev.steps_this_run)
            job.estimated_finish = self.clock.time() + per_step * (m.total_steps - m.step)
        else:
            message = f"Training paused at step {ev.step}; resuming continues from there"
            add_event(s, job, message, at=ev.time)

    def _checkpoint(self, job: Job, ev: CheckpointEvent) -> None:
        metrics = ev.metrics.data() if ev.metrics is not None else None
        if metrics is not None:
            metrics.pop("total_steps", None)
        name = checkpoints.register(
            self.catalog,
            job,
            step=ev.step,
            path=Path(ev.path),
            metrics=metrics,
            at=ev.time,
            final=ev.is_final,
        )
        if not ev.is_final:
            with self.db.begin() as s:
                message = f"Checkpoint created at step {ev.step} with Snapshot ID: {name}"
                add_event(s, job, message, at=ev.time)

    # -- exit

    def _finish(self, cur: Running, code: int) -> None:
        if isinstance(cur.outcome, DoneEvent):
            self._succeed(cur, cur.outcome)
        elif isinstance(cur.outcome, PausedEvent):
            # Paused as asked (the job is paused or queued now): just let go. Paused
            # while still running (a previous owner shut down): back to the queue.
            self._move_or_release(cur.job_id, states.REQUEUE)
        else:
            reason = (
                cur.outcome.message
                if isinstance(cur.outcome, ErrorEvent)
                else f"the training process exited with code {code}"
            )
            self._fail(cur.job_id, f"Training failed: {reason}")

    def _succeed(self, cur: Running, done: DoneEvent) -> None:
        with self.db() as s:
            job = s.get(Job, cur.job_id)
        assert job is not None
        # The final checkpoint is registered already, unless the process that wrote
        # it died before we read it (the job then resumed at the end): register it now.
        name = checkpoints.register(
            self.catalog,
            job,
            step=done.step,
            path=Path(done.path),
            metrics=None,
            at=done.time,
            final=True,
        )
        result = self.files.create_from_bytes(
            project=job.project,
            filename=f"{job.id}_results.csv",
            purpose="fine-tune-results",
            data=results_csv(self.db, job.id).encode(),
        )
        self._move_or_release(
            cur.job_id,
            states.SUCCEED,
            changes={
                "fine_tuned_model": name,
                "finished_at": self.clock.time(),
                "trained_tokens": done.trained_tokens,
                "result_files": [result.id],
            },
            notes=[
                Note(f"New fine-tuned model created: {name}"),
                Note("The job has successfully completed"),
            ],
        )

    def _fail(self, job_id: str, message: str) -> None:
        self._move_or_release(
            job_id,
            states.FAIL,
            changes={"error": {"code": "server_error", "message": message, "param": None}},
            notes=[Note(message, level="error")],
        )

    def _move_or_release(
        self,
        job_id: str,
        t: states.Transition,
        *,
        changes: states.JobChanges | None = None,
        notes: list[Note] | None = None,
    ) -> None:
        """Move a job we hold along `t`; if its status no longer allows that (it was
        cancelled or paused meanwhile), just let go of it."""
        with self.db.begin() as s:
            moved = states.apply(
                s,
                job_id,
                t,
                now=self.clock.time(),
                worker_id=self.id,
                changes=changes,
                notes=notes or [],
            )
            if moved is None:
                states.release(s, job_id, self.id)


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
