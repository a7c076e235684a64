"""The Batch service and worker (contract §12) with the real MiniLM embedder.

The worker is stepped by hand (or run in a killed-and-restarted process), so
every state the batch passes through can be looked at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import register_models
from tests.tiny_models import tiny_registry_entry
from tunelab.batches.executors import CHAT, COMPLETIONS, ChatExecutor, EmbeddingsExecutor, Outcome
from tunelab.batches.service import BatchService
from tunelab.batches.worker import BatchWorker
from tunelab.db.base import Database
from tunelab.embeddings import endpoint
from tunelab.embeddings.protocol import Embedder
from tunelab.errors import InvalidRequest
from tunelab.files import FileStore
from tunelab.inference.service import InferenceService
from tunelab.models.registry import Registry
from tunelab.protocol.batches import BatchCreate
from tunelab.protocol.embeddings import EmbeddingRequest
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel
EMBED = "/v1/embeddings"
P = "proj"


@dataclass
class Env:
    db: Database
    files: FileStore
    registry: Registry
    embeddings: Embedder
    service: BatchService

    def worker(self, executor: Any = None, **kw: Any) -> BatchWorker:
        executor = executor or EmbeddingsExecutor(self.registry, self.embeddings, chunk_size=64)
        return BatchWorker(self.db, self.files, {EMBED: executor}, **kw)

    def upload(self, lines: list[Any]) -> str:
        data = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
        row = self.files.create_from_bytes(
            project=P, filename="in.jsonl", purpose="batch", data=data.encode()
        )
        return row.id

    def create(self, lines: list[Any]) -> str:
        req = BatchCreate(input_file_id=self.upload(lines), endpoint=EMBED, completion_window="24h")
        return self.service.create(P, req).id

    def read(self, file_id: str | None) -> list[dict[str, Any]]:
        assert file_id is not None
        path = self.files.path(self.files.get(P, file_id))
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def env(settings: Settings) -> Iterator[Env]:
    # The runtime's storage and engines, not started: tests step their own worker.
    rt = build_runtime(settings, embedded_worker=False)
    yield Env(rt.db, rt.files, rt.registry, rt.embeddings, BatchService(rt.db, rt.files, (EMBED,)))
    rt.close()


def line(i: int, text: str, **body: Any) -> dict[str, Any]:
    body = {"model": "text-embedding-3-small", "input": text, "encoding_format": "float", **body}
    return {"custom_id": f"req-{i}", "method": "POST", "url": EMBED, "body": body}


def run_to_end(worker: BatchWorker, limit: int = 10_000) -> None:
    for _ in range(limit):
        if not worker.step():
            return
    raise AssertionError("the worker never went idle")


def test_1000_line_batch_equals_requests_sent_one_by_one(env: Env) -> None:
    texts = [
        f"sentence {i}: the {['router', 'pizza', 'river'][i % 3]} number {i}" for i in range(1000)
    ]
    batch_id = env.create([line(i, t) for i, t in enumerate(texts)])
    worker = env.worker()
    worker.step()  # validates
    assert env.service.get(P, batch_id).status == "in_progress"
    worker.step()  # one chunk: the counts are live
    counts = env.service.get(P, batch_id).request_counts
    assert (counts.total, counts.completed, counts.failed) == (1000, 64, 0)
    run_to_end(worker)
    batch = env.service.get(P, batch_id)
    assert batch.status == "completed" and batch.request_counts.completed == 1000
    assert batch.error_file_id is None and batch.completed_at is not None
    out = env.read(batch.output_file_id)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(1000)]
    rows = np.array([o["response"]["body"]["data"][0]["embedding"] for o in out])
    for i in range(0, 1000, 97):  # the same request, sent alone
        req = EmbeddingRequest(**line(i, texts[i])["body"])
        p = endpoint.prepare(req, env.registry, env.embeddings, count=True)
        alone = endpoint.respond(p, env.embeddings.embed(req.model, p.texts))
        got = out[i]["response"]
        assert got["status_code"] == 200 and out[i]["error"] is None
        assert got["body"]["usage"] == alone["usage"] and got["body"]["model"] == alone["model"]
        # Its own text's vector, to the rounding of its batch: bf16 autocast (CPUs with
        # native bf16) rounds a padded group of 64 differently from a text alone (up to
        # ~5e-4 per component on AVX512-BF16), fp32 to ~1e-6. Of all 1000 rows, the
        # closest to the text sent alone must be its own, and almost identical.
        cosines = rows @ np.asarray(alone["data"][0]["embedding"])
        assert int(cosines.argmax()) == i and cosines[i] > 0.9999


def test_bad_lines_fail_the_batch_with_their_line_numbers(env: Env) -> None:
    lines = [
        line(1, "fine"),
        "{not json",
        line(1, "same custom_id again"),
        {**line(3, "x"), "url": "/v1/chat/completions"},
        line(4, "other model", model="all-minilm-l6-v2"),
        {"custom_id": "req-5", "url": EMBED, "body": {}},
    ]
    batch_id = env.create(lines)
    run_to_end(env.worker())
    batch = env.service.get(P, batch_id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors is not None
    got = [(e.line, e.code) for e in batch.errors.data]
    assert got == [
        (2, "invalid_json_line"),
        (3, "duplicate_custom_id"),
        (4, "url_mismatch"),
        (5, "model_mismatch"),
        (6, "missing_required_parameter"),
    ]
    assert batch.errors.data[4].param == "method"


def test_a_failing_request_goes_to_the_error_file(env: Env) -> None:
    batch_id = env.create(
        [line(0, "good"), line(1, "too many dims", dimensions=10_000), line(2, "")]
    )
    run_to_end(env.worker())
    batch = env.service.get(P, batch_id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 2)
    errors = {e["custom_id"]: e for e in env.read(batch.error_file_id)}
    assert errors["req-1"]["response"]["status_code"] == 400
    assert errors["req-1"]["response"]["body"]["error"]["param"] == "dimensions"
    assert errors["req-2"]["response"]["body"]["error"]["param"] == "input"
    assert [o["custom_id"] for o in env.read(batch.output_file_id)] == ["req-0"]


def test_cancel_keeps_finished_lines_and_reports_the_rest(env: Env) -> None:
    batch_id = env.create([line(i, f"text {i}") for i in range(200)])
    worker = env.worker()
    worker.step()
    worker.step()  # 64 lines done
    assert env.service.cancel(P, batch_id).status == "cancelling"
    run_to_end(worker)
    batch = env.service.get(P, batch_id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (64, 136)
    assert len(env.read(batch.output_file_id)) == 64
    errors = env.read(batch.error_file_id)
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert all(e["response"] is None for e in errors)
    with pytest.raises(InvalidRequest) as e:
        env.service.cancel(P, batch_id)
    assert e.value.param == "batch_id"


def test_a_batch_past_its_window_expires(env: Env) -> None:
    now = [int(time.time())]
    batch_id = env.create([line(i, f"text {i}") for i in range(100)])
    worker = env.worker(clock=lambda: now[0])
    worker.step()
    worker.step()
    now[0] += 2 * 86_400
    run_to_end(worker)
    batch = env.service.get(P, batch_id)
    assert batch.status == "expired" and batch.expired_at == now[0]
    assert {e["error"]["code"] for e in env.read(batch.error_file_id)} == {"batch_expired"}
    assert batch.request_counts.completed + batch.request_counts.failed == 100


def test_create_refuses_bad_arguments_by_name(env: Env) -> None:
    file_id = env.upload([line(0, "x")])
    cases = [
        ({"completion_window": "1h"}, "completion_window"),
        ({"endpoint": "/v1/moderations"}, "endpoint"),
        ({"input_file_id": "file-nope"}, "input_file_id"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ]
    for change, param in cases:
        args = {"input_file_id": file_id, "endpoint": EMBED, "completion_window": "24h", **change}
        with pytest.raises(InvalidRequest) as e:
            env.service.create(P, BatchCreate(**args))
        assert e.value.param == param
    other = env.files.create_from_bytes(
        project=P, filename="t.jsonl", purpose="fine-tune", data=b"{}\n"
    )
    with pytest.raises(InvalidRequest) as e:
        env.service.create(
            P, BatchCreate(input_file_id=other.id, endpoint=EMBED, completion_window="24h")
        )
    assert "purpose 'batch'" in e.value.message


class Counting:
    """Wraps an executor and counts the lines it was asked to run."""

    def __init__(self, inner: EmbeddingsExecutor) -> None:
        self.inner, self.chunk_size, self.lines = inner, inner.chunk_size, 0

    def run(self, project: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
        self.lines += len(bodies)
        return self.inner.run(project, bodies)


def test_a_new_worker_resumes_an_abandoned_batch_without_redoing_lines(env: Env) -> None:
    now = [int(time.time())]
    batch_id = env.create([line(i, f"text {i}") for i in range(150)])
    first = env.worker(clock=lambda: now[0])
    first.step()
    first.step()  # 64 lines, then the worker is gone (its lease still held)
    second = Counting(EmbeddingsExecutor(env.registry, env.embeddings, chunk_size=64))
    worker = env.worker(second, clock=lambda: now[0])
    assert not worker.step(), "the lease of a worker that may be alive must be respected"
    now[0] += 120
    run_to_end(worker)
    batch = env.service.get(P, batch_id)
    assert batch.status == "completed" and second.lines == 150 - 64
    assert sorted(o["custom_id"] for o in env.read(batch.output_file_id)) == sorted(
        f"req-{i}" for i in range(150)
    )


WORKER_SCRIPT = """
import sys
from tunelab.batches.executors import EmbeddingsExecutor
from tunelab.batches.worker import BatchWorker
from tunelab.runtime import build_runtime
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

rt = build_runtime(Settings(data_dir=sys.argv[1]), embedded_worker=False)
executor = EmbeddingsExecutor(rt.registry, rt.embeddings, chunk_size=32)
worker = BatchWorker(rt.db, rt.files, {"/v1/embeddings": executor}, lease_s=2, pause_s=0.2)
worker.run_forever()
"""


def test_a_killed_worker_process_loses_and_repeats_nothing(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    batch_id = env.create([line(i, f"text number {i}") for i in range(400)])
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT, encoding="utf-8")
    cmd = [sys.executable, str(script), str(settings.data_dir)]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # the worker process loads MiniLM first
        while env.service.get(P, batch_id).request_counts.completed < 64:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up
        proc.wait()
        killed_at = env.service.get(P, batch_id)
        assert killed_at.status == "in_progress" and killed_at.request_counts.completed < 400
        proc = subprocess.Popen(cmd, start_new_session=True)
        deadline = time.monotonic() + 180
        while (batch := env.service.get(P, batch_id)).status != "completed":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert batch.request_counts.completed == 400 and batch.request_counts.failed == 0
    ids = [o["custom_id"] for o in env.read(batch.output_file_id)]
    assert ids == [f"req-{i}" for i in range(400)]


@pytest.fixture
def chat_env(settings: Settings, tiny_chat_dir: Path) -> Iterator[tuple[Env, InferenceService]]:
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    rt = build_runtime(settings, embedded_worker=False)
    service = BatchService(rt.db, rt.files, (CHAT, COMPLETIONS))
    yield Env(rt.db, rt.files, rt.registry, rt.embeddings, service), rt.inference
    rt.close()


def test_100_line_chat_batch_equals_requests_sent_one_by_one(
    chat_env: tuple[Env, InferenceService],
) -> None:
    env, inference = chat_env
    bodies = [
        {
            "model": "tiny-chat",
            "messages": [{"role": "user", "content": f"Question {i}?"}],
            "max_tokens": 6,
            "temperature": 0,
        }
        for i in range(100)
    ]
    bodies[7] = {**bodies[7], "functions": [{"description": "f"}]}  # nameless: refused, per line
    lines = [
        {"custom_id": f"c{i}", "method": "POST", "url": CHAT, "body": b}
        for i, b in enumerate(bodies)
    ]
    req = BatchCreate(input_file_id=env.upload(lines), endpoint=CHAT, completion_window="24h")
    batch_id = env.service.create(P, req).id
    executor = ChatExecutor(inference, CHAT)
    run_to_end(BatchWorker(env.db, env.files, {CHAT: executor}))
    batch = env.service.get(P, batch_id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (99, 1)
    out = {o["custom_id"]: o["response"]["body"] for o in env.read(batch.output_file_id)}
    (err,) = env.read(batch.error_file_id)
    assert (
        err["custom_id"] == "c7"
        and err["response"]["body"]["error"]["param"] == "functions[0].name"
    )
    for i in range(0, 100, 9):
        if i == 7:
            continue
        alone = executor.run(P, [bodies[i]])[0].body  # the same request, on its own
        got = out[f"c{i}"]
        assert got["object"] == "chat.completion" and got["model"] == "tiny-chat"
        assert got["choices"] == alone["choices"] and got["usage"] == alone["usage"]


def test_completions_batch_runs_legacy_completions(chat_env: tuple[Env, InferenceService]) -> None:
    env, inference = chat_env
    lines = [
        {
            "custom_id": f"t{i}",
            "method": "POST",
            "url": COMPLETIONS,
            "body": {"model": "text-davinci-003", "prompt": ["Once", "Twice"], "max_tokens": 3},
        }
        for i in range(3)
    ]
    req = BatchCreate(
        input_file_id=env.upload(lines), endpoint=COMPLETIONS, completion_window="24h"
    )
    batch_id = env.service.create(P, req).id
    run_to_end(BatchWorker(env.db, env.files, {COMPLETIONS: ChatExecutor(inference, COMPLETIONS)}))
    batch = env.service.get(P, batch_id)
    assert batch.status == "completed" and batch.request_counts.completed == 3
    body = env.read(batch.output_file_id)[0]["response"]["body"]
    assert body["object"] == "text_completion" and len(body["choices"]) == 2
