"""The job state machine as a spec: the transition table, the one function that applies
it, crash recovery on an injected clock, and that nothing else writes a job's status."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support import FakeClock, chat_lines, scratch_database
from tests.tiny_models import TINY_CHAT
from tunelab.jobs import states
from tunelab.jobs.recovery import MAX_ATTEMPTS
from tunelab.jobs.tables import Job, JobEvent
from tunelab.jobs.worker import Worker
from tunelab.protocol.fine_tuning import JobCreate
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "tunelab"


@pytest.fixture
def rt(tiny_settings: Settings) -> Iterator[Runtime]:
    r = build_runtime(tiny_settings, embedded_worker=False)
    yield r
    r.close()


def new_job(rt: Runtime) -> str:
    f = rt.files.create_from_bytes(
        project="default", filename="t.jsonl", purpose="fine-tune", data=chat_lines(12)
    )
    return rt.jobs.create("default", JobCreate(model=TINY_CHAT, training_file=f.id)).id


def worker_on(rt: Runtime, *, worker_id: str | None = None, clock: FakeClock) -> Worker:
    """A worker on the runtime's services, with its own id and (fake) clock."""
    return Worker(rt.db, rt.settings, rt.catalog, rt.files, worker_id=worker_id, clock=clock)


def row(rt: Runtime, job_id: str) -> Job:
    with rt.db() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def messages(rt: Runtime, job_id: str) -> list[tuple[str, str]]:
    with rt.db() as s:
        return [
            (level, message)
            for level, message in s.execute(
                select(JobEvent.level, JobEvent.message)
                .where(JobEvent.job_id == job_id)
                .order_by(JobEvent.seq)
            ).all()
        ]


def test_the_table_is_contract_2_4() -> None:
    expected = {
        ("validating_files", "validating_files"),  # a worker takes it to validate
        ("validating_files", "queued"),
        ("validating_files", "failed"),
        ("validating_files", "cancelled"),
        ("queued", "running"),
        ("queued", "paused"),
        ("queued", "cancelled"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "paused"),
        ("running", "queued"),  # its worker shut down or died
        ("running", "cancelled"),
        ("paused", "queued"),  # resume
        ("paused", "cancelled"),
    }
    assert expected == states.ALLOWED
    assert not any(source in states.TERMINAL for source, _ in states.ALLOWED)
    assert set(states.ACTIVE) | set(states.TERMINAL) == set(states.STATUSES)


def _put(rt: Runtime, job_id: str, status: str, holder: str | None) -> None:
    # Test setup only: place the job in a state without walking the machine there.
    with rt.db.begin() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.worker_id = status, holder


@pytest.mark.parametrize("t", states.TRANSITIONS, ids=lambda t: t.name)
def test_apply_moves_exactly_from_the_allowed_statuses(rt: Runtime, t: states.Transition) -> None:
    job_id = new_job(rt)
    for status in states.STATUSES:
        holder = None if t.holding == "take" else "w1"
        _put(rt, job_id, status, holder)
        before = len(messages(rt, job_id))
        with rt.db.begin() as s:
            moved = states.apply(
                s, job_id, t, now=123.0, worker_id="w1", notes=[states.Note(f"{t.name}!")]
            )
        job = row(rt, job_id)
        if status in t.source:
            assert moved is not None and moved.status == t.target == job.status
            assert messages(rt, job_id)[before:] == [("info", f"{t.name}!")]
            expected_holder = {"take": "w1", "keep": "w1", "release": None}[t.holding]
            assert job.worker_id == expected_holder
            if t.holding == "take":
                assert job.heartbeat_at == 123.0
        else:
            assert moved is None and job.status == status and job.worker_id == holder
            assert len(messages(rt, job_id)) == before  # no event for a move not made


def test_take_needs_an_unheld_job_and_release_needs_the_holder(rt: Runtime) -> None:
    job_id = new_job(rt)
    with rt.db.begin() as s:
        assert states.apply(s, job_id, states.TAKE_FOR_VALIDATION, now=1.0, worker_id="a")
    with rt.db.begin() as s:  # held by a: b cannot take it
        assert states.apply(s, job_id, states.TAKE_FOR_VALIDATION, now=1.0, worker_id="b") is None
    with rt.db.begin() as s:  # nor move it on a's behalf
        assert states.apply(s, job_id, states.VALIDATED, now=1.0, worker_id="b") is None
        assert not states.release(s, job_id, "b")
    with rt.db.begin() as s:
        assert states.apply(s, job_id, states.VALIDATED, now=1.0, worker_id="a")
    job = row(rt, job_id)
    assert (job.status, job.worker_id) == ("queued", None)
    with rt.db.begin() as s:
        assert states.apply(s, job_id, states.START, now=2.0, worker_id="b")
    assert row(rt, job_id).attempts == 1


def test_cancel_keeps_the_holder_until_the_worker_lets_go(rt: Runtime) -> None:
    jobs = rt.jobs
    job_id = new_job(rt)
    worker = worker_on(rt, worker_id="w", clock=FakeClock())
    assert worker.claim(states.TAKE_FOR_VALIDATION) == job_id
    assert jobs.cancel("default", job_id).status == "cancelled"
    assert row(rt, job_id).worker_id == "w"  # the worker stops its work first
    with rt.db.begin() as s:
        assert states.release(s, job_id, "w")
    assert row(rt, job_id).worker_id is None


def queued_job(rt: Runtime) -> str:
    """A new job whose files a worker validated (walked through the machine by hand, so
    that other jobs in a shared database are not picked instead)."""
    job_id = new_job(rt)
    with rt.db.begin() as s:
        assert states.apply(s, job_id, states.TAKE_FOR_VALIDATION, now=0.0, worker_id="v")
        assert states.apply(s, job_id, states.VALIDATED, now=0.0, worker_id="v")
    return job_id


def _running_on(rt: Runtime, job_id: str, worker: Worker) -> None:
    with rt.db.begin() as s:
        assert states.apply(s, job_id, states.START, now=worker.clock.time(), worker_id=worker.id)
    assert row(rt, job_id).worker_id == worker.id


def test_recovery_requeues_a_stale_job_then_fails_it_after_max_attempts(
    rt: Runtime,
) -> None:
    job_id = queued_job(rt)
    clock = FakeClock()
    rescuer = worker_on(rt, worker_id="rescuer", clock=clock)
    stale = rt.settings.worker_stale_seconds

    for attempt in range(1, MAX_ATTEMPTS + 1):
        _running_on(
            rt,
            job_id,
            worker_on(rt, worker_id=f"dead-{attempt}", clock=clock),
        )
        assert row(rt, job_id).attempts == attempt
        clock.advance(stale - 1)
        rescuer.recover_stale()
        assert row(rt, job_id).status == "running"  # not stale yet
        clock.advance(2)
        rescuer.recover_stale()
        job = row(rt, job_id)
        assert job.worker_id is None and job.pid is None
        if attempt < MAX_ATTEMPTS:
            assert job.status == "queued"
            assert messages(rt, job_id)[-1][0] == "warn"
    assert job.status == "failed" and job.error is not None
    assert job.error["code"] == "server_error"
    level, message = messages(rt, job_id)[-1]
    assert level == "error" and f"stopped unexpectedly {MAX_ATTEMPTS} times" in message


def test_recovery_only_lets_go_of_a_job_that_is_not_running(rt: Runtime) -> None:
    job_id = queued_job(rt)
    clock = FakeClock()
    _running_on(rt, job_id, worker_on(rt, worker_id="dead", clock=clock))
    assert rt.jobs.pause("default", job_id).status == "paused"
    clock.advance(rt.settings.worker_stale_seconds + 1)
    worker_on(rt, clock=clock).recover_stale()
    job = row(rt, job_id)
    assert (job.status, job.worker_id) == ("paused", None)


def test_a_worker_that_heart_beats_keeps_its_job(rt: Runtime) -> None:
    job_id = queued_job(rt)
    clock = FakeClock()
    _running_on(rt, job_id, worker_on(rt, worker_id="alive", clock=clock))
    for _ in range(3):
        clock.advance(rt.settings.worker_stale_seconds - 1)
        with rt.db.begin() as s:
            assert states.heartbeat(s, job_id, "alive", clock.time())
        worker_on(rt, clock=clock).recover_stale()
    assert row(rt, job_id).worker_id == "alive"


# Job columns that only tunelab.jobs.states may write.
GUARDED = {"status", "worker_id", "pid", "heartbeat_at", "attempts"}


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute) and t.attr in GUARDED:
                    found.append((node.lineno, f".{t.attr} ="))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("values", "update")
        ):
            found += [
                (node.lineno, f"{node.func.attr}({k.arg}=)")
                for k in node.keywords
                if k.arg in GUARDED
            ]
        if isinstance(node, ast.Dict):
            found += [
                (node.lineno, f"{{{k.value!r}: ...}}")
                for k in node.keys
                if isinstance(k, ast.Constant) and k.value in GUARDED
            ]
    return found


def test_no_module_but_states_writes_a_job_status() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "jobs" / "states.py" or "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if "jobs.tables import" not in text:  # only modules that touch the jobs table
            continue
        offenders += [f"{path.relative_to(PACKAGE)}:{n}: {w}" for n, w in _writes(ast.parse(text))]
    assert offenders == []
    # The check can see a write: the states module itself is full of them.
    assert _writes(ast.parse((PACKAGE / "jobs" / "states.py").read_text(encoding="utf-8")))


def test_the_machine_on_postgres(
    tiny_settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    url = scratch_database(postgres_url, f"states_{tmp_path.name}")
    rt = build_runtime(
        tiny_settings.model_copy(update={"database_url": url}), embedded_worker=False
    )
    try:
        for t in states.TRANSITIONS:
            test_apply_moves_exactly_from_the_allowed_statuses(rt, t)
        test_take_needs_an_unheld_job_and_release_needs_the_holder(rt)
        test_recovery_requeues_a_stale_job_then_fails_it_after_max_attempts(rt)
    finally:
        rt.close()
