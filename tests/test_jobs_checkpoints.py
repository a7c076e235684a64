"""A job's checkpoints are catalog rows: one record each, with names no two jobs share."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import chat_lines
from tests.tiny_models import TINY_CHAT
from tunelab.errors import NotFound
from tunelab.jobs import checkpoints
from tunelab.jobs.tables import Job
from tunelab.models.catalog import Catalog
from tunelab.protocol.fine_tuning import JobCreate
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def rt(tiny_settings: Settings) -> Iterator[Runtime]:
    r = build_runtime(tiny_settings, embedded_worker=False)
    yield r
    r.close()


def create(rt: Runtime, suffix: str | None = "same", project: str = "default") -> Job:
    f = rt.files.create_from_bytes(
        project=project, filename="t.jsonl", purpose="fine-tune", data=chat_lines(12)
    )
    req = JobCreate(model=TINY_CHAT, training_file=f.id, suffix=suffix)
    job_id = rt.jobs.create(project, req).id
    with rt.db() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def weights_dir(rt: Runtime, job: Job, step: int) -> Path:
    return rt.settings.models_dir / job.id / f"step-{step}"


def weights(rt: Runtime, job: Job, step: int) -> Path:
    """A checkpoint directory as the training process leaves it (contents not needed here)."""
    path = weights_dir(rt, job, step)
    path.mkdir(parents=True)
    return path


def test_concurrent_jobs_get_distinct_models(rt: Runtime) -> None:
    # Jobs created in the same instant: their ids share the time prefix.
    with ThreadPoolExecutor(16) as pool:
        jobs = list(pool.map(lambda _: create(rt), range(16)))
    paths = {job.id: weights(rt, job, 3) for job in jobs}

    def finish(job: Job) -> str:
        return checkpoints.register(
            rt.catalog,
            job,
            step=3,
            path=paths[job.id],
            metrics={"step": 3, "train_loss": 0.5},
            at=1.0,
            final=True,
        )

    with ThreadPoolExecutor(16) as pool:
        names = list(pool.map(finish, jobs))
    assert len(set(names)) == 16
    for job, name in zip(jobs, names, strict=True):
        assert name.startswith(f"ft:{TINY_CHAT}:default:same:")
        resolved = rt.catalog.resolve("default", name)
        assert resolved.path == paths[job.id]  # each name serves its own job's weights
        page, _ = rt.catalog.job_checkpoints("default", job.id, after=None, limit=10)
        assert [c.id for c in page] == [name]


def test_a_taken_name_is_never_replaced(rt: Runtime) -> None:
    draws = iter(["AAAAAAAA", "AAAAAAAA", "BBBBBBBB"])
    catalog = Catalog(rt.registry, rt.db, rt.settings.models_dir, id8=lambda: next(draws))
    first, second = create(rt), create(rt)
    a = checkpoints.register(
        catalog,
        first,
        step=3,
        path=weights(rt, first, 3),
        metrics=None,
        at=1.0,
        final=True,
    )
    b = checkpoints.register(
        catalog,
        second,
        step=3,
        path=weights(rt, second, 3),
        metrics=None,
        at=1.0,
        final=True,
    )
    assert a.endswith(":AAAAAAAA") and b.endswith(":BBBBBBBB")
    assert catalog.resolve("default", a).path == weights_dir(rt, first, 3)
    with pytest.raises(ValueError, match="exists already"):
        catalog.register_fine_tuned(
            project="default",
            model_id=a,
            base_model=TINY_CHAT,
            path=weights_dir(rt, second, 3),
            kind="lora",
        )
    assert catalog.resolve("default", a).path == weights_dir(rt, first, 3)


def test_projects_whose_names_slug_alike_never_share_a_model(rt: Runtime) -> None:
    """'Acme Corp' and 'acme-corp' spell the same name part; the same id8 drawn twice
    still gives two names, each serving its own project's weights, and only to it."""
    draws = iter(["SAMEID88", "SAMEID88", "OTHERID8"])
    catalog = Catalog(rt.registry, rt.db, rt.settings.models_dir, id8=lambda: next(draws))
    first, second = create(rt, project="Acme Corp"), create(rt, project="acme-corp")
    names = [
        checkpoints.register(
            catalog, job, step=3, path=weights(rt, job, 3), metrics=None, at=1.0, final=True
        )
        for job in (first, second)
    ]
    assert names == [
        f"ft:{TINY_CHAT}:acme-corp:same:SAMEID88",
        f"ft:{TINY_CHAT}:acme-corp:same:OTHERID8",
    ]
    assert catalog.resolve("Acme Corp", names[0]).path == weights_dir(rt, first, 3)
    assert catalog.resolve("acme-corp", names[1]).path == weights_dir(rt, second, 3)
    with pytest.raises(NotFound):
        catalog.resolve("acme-corp", names[0])
    with pytest.raises(NotFound):
        catalog.resolve("Acme Corp", names[1])


def test_one_record_per_checkpoint(rt: Runtime) -> None:
    job = create(rt, suffix=None)
    names = {
        step: checkpoints.register(
            rt.catalog,
            job,
            step=step,
            path=weights(rt, job, step),
            metrics={"step": step, "train_loss": 1.0 / step},
            at=float(step),
            final=step == 9,
        )
        for step in (3, 6, 9)
    }
    assert names[3].endswith(":ckpt-step-3") and not names[9].endswith(":ckpt-step-9")
    # Registering a step again (a re-read event) keeps its one record and name.
    again = checkpoints.register(
        rt.catalog,
        job,
        step=6,
        path=weights_dir(rt, job, 6),
        metrics=None,
        at=6.0,
        final=False,
    )
    assert again == names[6]

    jobs = rt.jobs
    listed, more = jobs.checkpoints("default", job.id, after=None, limit=10)
    assert [c.step_number for c in listed] == [9, 6, 3] and not more
    assert [c.fine_tuned_model_checkpoint for c in listed] == [names[9], names[6], names[3]]
    assert listed[1].metrics.train_loss == pytest.approx(1 / 6)
    assert all(c.id.startswith("ftckpt_") and len(c.id) == 31 for c in listed)
    first, more = jobs.checkpoints("default", job.id, after=None, limit=1)
    rest, _ = jobs.checkpoints("default", job.id, after=first[0].id, limit=10)
    assert more and [c.step_number for c in first + rest] == [9, 6, 3]

    # Pruned: model, checkpoint and weights go together.
    rt.catalog.remove_job_checkpoint("default", job.id, 3)
    with pytest.raises(NotFound):
        rt.catalog.resolve("default", names[3])
    assert not weights_dir(rt, job, 3).exists()
    # Deleting the model deletes the checkpoint: no checkpoint names a missing model.
    rt.catalog.delete("default", names[6])
    listed, _ = jobs.checkpoints("default", job.id, after=None, limit=10)
    assert [c.step_number for c in listed] == [9]
    assert rt.catalog.resolve("default", names[9]).kind == "lora"
