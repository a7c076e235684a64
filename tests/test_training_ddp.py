"""A worker configured for two training processes trains what one process trains (issue 17).

Two fine-tuning jobs on the same file and seed: one run by a worker as usual (one
training process), one by a worker with `train_processes=2`, which starts the same
training loop under torchrun (2 processes, gloo on CPU). Same global batch, so the
loss of every step matches within float-summation noise, the adapter weights match,
and both fine-tunes, served through tunelab, give the same greedy answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import select

from tests.support import chat_lines, run_server, sdk, wait_until
from tests.tiny_models import TINY_CHAT
from tunelab.jobs.tables import Job, JobEvent
from tunelab.jobs.worker import Worker
from tunelab.protocol.fine_tuning import JobCreate
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.slow  # two training runs (~1 min on 2 cores), one under torchrun

PROMPT: list[Any] = [{"role": "user", "content": "Question number 1?"}]


@pytest.fixture
def rt(tiny_settings: Settings) -> Any:
    # fp32: the two runs then differ only in the order of float additions.
    settings = tiny_settings.model_copy(update={"worker_poll_seconds": 0.1, "training_bf16": False})
    r = build_runtime(settings, embedded_worker=False)
    yield r
    r.close()


def train(rt: Runtime, file_id: str, processes: int) -> Job:
    req = JobCreate(
        model=TINY_CHAT,
        training_file=file_id,
        seed=7,
        # 10 examples, 4 per step: 3 steps per epoch, the last one uneven.
        hyperparameters={"n_epochs": 4, "batch_size": 4, "learning_rate_multiplier": 50},  # type: ignore[arg-type]
    )
    job_id = rt.jobs.create("default", req).id
    settings = rt.settings.model_copy(update={"train_processes": processes})
    worker = Worker(rt.db, settings, rt.catalog, rt.files)

    def finished() -> Job | None:
        worker.tick()
        with rt.db() as s:
            job = s.get(Job, job_id)
        assert job is not None
        return job if job.status in ("succeeded", "failed", "cancelled") else None

    job = wait_until(finished, timeout=600, every=0.1, what=f"the {processes}-process job")
    assert job is not None and job.status == "succeeded", job and job.error
    return job


def events(rt: Runtime, job_id: str) -> list[JobEvent]:
    with rt.db() as s:
        return list(
            s.execute(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))
            .scalars()
            .all()
        )


def test_two_processes_train_what_one_trains(rt: Runtime) -> None:
    f = rt.files.create_from_bytes(
        project="default", filename="t.jsonl", purpose="fine-tune", data=chat_lines(10)
    )
    one, two = train(rt, f.id, 1), train(rt, f.id, 2)
    ev_one, ev_two = events(rt, one.id), events(rt, two.id)
    assert any("on 2 training processes" in e.message for e in ev_two)
    assert any("2 processes)" in e.message for e in ev_two)  # the loop ran as a group of 2
    assert not any("processes" in e.message for e in ev_one)

    def curve(evs: list[JobEvent]) -> list[float]:
        return [e.data["train_loss"] for e in evs if e.type == "metrics" and e.data]

    losses_one, losses_two = curve(ev_one), curve(ev_two)
    assert len(losses_one) == len(losses_two) == 12  # rank 0 alone reports
    assert losses_one[-1] < losses_one[0] - 0.5, losses_one  # it learns: not a trivial match
    for a, b in zip(losses_one, losses_two, strict=True):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (losses_one, losses_two)
    assert one.trained_tokens == two.trained_tokens

    assert one.fine_tuned_model and two.fine_tuned_model
    paths = [
        rt.catalog.resolve("default", m).path for m in (one.fine_tuned_model, two.fine_tuned_model)
    ]
    assert paths[0] is not None and paths[1] is not None
    w_one = load_file(Path(paths[0]) / "adapter_model.safetensors")
    w_two = load_file(Path(paths[1]) / "adapter_model.safetensors")
    assert w_one.keys() == w_two.keys()
    for k in w_one:
        assert torch.allclose(w_one[k], w_two[k], atol=1e-5), k

    with run_server(rt) as url:
        client = sdk(url)

        def greedy(model: str) -> str:
            r = client.chat.completions.create(
                model=model, messages=PROMPT, max_tokens=12, temperature=0
            )
            return r.choices[0].message.content or ""

        answer = greedy(one.fine_tuned_model)
        assert answer == greedy(two.fine_tuned_model)
        assert answer != greedy(TINY_CHAT)
