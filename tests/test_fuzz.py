"""The fuzzer: no input, however hostile, gets a 5xx, stops the server, or touches
another project's data (issue 11).

Two parts against one keyed server:

- property-based: schemathesis draws requests for every operation of the app's own
  OpenAPI schema (a bounded number each, derandomized so CI runs the same cases);
- hand-written: what a schema cannot express, sent into every field of every JSON
  body (NaN, Infinity, 10**400, lone surrogates, very deep nesting, long strings),
  bodies over the limit, and concurrent creates.

Project beta owns a file, a vector store and a job before the fuzzing starts (as
project alpha), and they must be exactly as they were afterwards. The chat engine is
the scripted one (the seam; the real scheduler's isolation is tests/test_hardening.py),
so a drawn `max_tokens` costs nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ScriptedChatEngine, chat_lines, register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.api.app import create_app
from tunelab.api.deps import TunelabApp
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.api

ALPHA = {"Authorization": "Bearer key-alpha"}
# Cases drawn per operation (~60 operations): CI's bounded budget. Raise it locally
# with TUNELAB_FUZZ_EXAMPLES=200 for a longer hunt.
EXAMPLES = int(os.environ.get("TUNELAB_FUZZ_EXAMPLES", "6"))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path) -> Any:
    from transformers import AutoTokenizer

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz") / "data",
        cache_dir=model_cache,
        api_keys="key-alpha:alpha,key-beta:beta",
        max_request_bytes=1024 * 1024,
        max_upload_bytes=256 * 1024,
        embedded_worker=False,
    )
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    engine = ScriptedChatEngine(AutoTokenizer.from_pretrained(tiny_chat_dir), lambda _: "Fine.")
    return create_app(build_runtime(settings, chat_engine=engine))


@pytest.fixture(scope="module")
def url(app: TunelabApp) -> Iterator[str]:
    with run_server(app) as u:
        yield u


@pytest.fixture(scope="module")
def beta_data(url: str) -> dict[str, Any]:
    """What project beta owns, as it looked before the fuzzing."""
    beta = sdk(url, "key-beta")
    f = beta.files.create(file=("b.jsonl", chat_lines(10)), purpose="fine-tune")
    vs = beta.vector_stores.create(name="beta store", metadata={"owner": "beta"})
    job = beta.fine_tuning.jobs.create(model=TINY_CHAT, training_file=f.id, suffix="beta")
    return snapshot(url, f.id, vs.id, job.id)


def snapshot(url: str, file_id: str, store_id: str, job_id: str) -> dict[str, Any]:
    beta = sdk(url, "key-beta")
    return {
        "files": sorted(x.id for x in beta.files.list()),
        "content": beta.files.content(file_id).read(),
        "store": beta.vector_stores.retrieve(store_id).model_dump(exclude={"last_active_at"}),
        "stores": sorted(x.id for x in beta.vector_stores.list()),
        "job": beta.fine_tuning.jobs.retrieve(job_id).status,
        "ids": (file_id, store_id, job_id),
    }


def assert_unharmed(url: str, before: dict[str, Any]) -> None:
    assert sdk(url, "key-alpha").models.list().data  # the server answers
    assert snapshot(url, *before["ids"]) == before


def test_schema_fuzzing_finds_no_5xx(url: str, app: TunelabApp, beta_data: dict[str, Any]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40  # the whole API, not a corner of it
    import requests

    with requests.Session() as session:
        for op in operations:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy())
            def fuzz(case: Any) -> None:
                r = case.call(base_url=url, session=session, headers=ALPHA, timeout=60)
                if r.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                        f"{r.status_code}: {r.text[:300]}"
                    )

            fuzz()
    assert not failures, "\n".join(failures[:20])
    assert_unharmed(url, beta_data)


HOSTILE: list[Any] = [
    float("nan"),
    -float("inf"),
    10**400,
    "\ud800",
    "x" * 100_000,
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    True,
]


def json_operations(app: TunelabApp) -> list[tuple[str, str, list[str]]]:
    """(method, path, top-level body fields) of every operation with a JSON body."""
    spec = app.openapi()
    refs = spec.get("components", {}).get("schemas", {})
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            schema = body["schema"]
            if "$ref" in schema:
                schema = refs[schema["$ref"].rsplit("/", 1)[1]]
            out.append((method.upper(), path, sorted(schema.get("properties", {}))))
    return out


def test_hostile_values_in_every_field_get_no_5xx(
    url: str, app: TunelabApp, beta_data: dict[str, Any]
) -> None:
    failures = []
    ops = json_operations(app)
    assert len(ops) > 15
    with httpx.Client(
        base_url=url, headers={**ALPHA, "content-type": "application/json"}, timeout=60
    ) as client:
        for method, path, fields in ops:
            path = path.replace("{", "").replace("}", "")  # ids that do not exist: 404s
            deep = "[" * 100_000 + "]" * 100_000
            bodies = [json.dumps({f: v}) for f in fields for v in HOSTILE]
            bodies += [deep, '{"a": NaN}', '"\\ud800"', "[]", "null", "{" * 50_000, "1e999"]
            for body in bodies:
                r = client.request(method, path, content=body.encode())
                if r.status_code >= 500:
                    failures.append(
                        f"{method} {path} {body[:80]!r} -> {r.status_code}: {r.text[:200]}"
                    )
    assert not failures, "\n".join(failures[:20])
    assert_unharmed(url, beta_data)


def test_concurrent_creates_each_get_their_own_object(url: str, beta_data: dict[str, Any]) -> None:
    alpha = sdk(url, "key-alpha")
    training = alpha.files.create(file=("a.jsonl", chat_lines(10)), purpose="fine-tune").id

    def create(i: int) -> tuple[str, str, str]:
        f = alpha.files.create(file=(f"f{i}.txt", f"file {i}".encode()), purpose="assistants")
        vs = alpha.vector_stores.create(name=f"store {i}")
        job = alpha.fine_tuning.jobs.create(model=TINY_CHAT, training_file=training, suffix="same")
        return f.id, vs.id, job.id

    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(create, range(16)))
    for k in range(3):
        assert len({m[k] for m in made}) == 16
    for i, (file_id, store_id, _) in enumerate(made):
        assert alpha.files.content(file_id).read() == f"file {i}".encode()
        assert alpha.vector_stores.retrieve(store_id).name == f"store {i}"
    assert_unharmed(url, beta_data)


def test_bodies_over_the_limits_are_refused_and_leave_nothing(
    url: str, app: TunelabApp, beta_data: dict[str, Any]
) -> None:
    before = sorted(p.name for p in app.runtime.settings.files_dir.rglob("*"))
    big = {"model": TINY_CHAT, "input": ["x" * 1000] * 2000}  # 2 MB > 1 MiB
    r = httpx.post(url + "/v1/embeddings", json=big, headers=ALPHA, timeout=60)
    assert r.status_code == 413
    files = {"file": ("big.txt", b"x" * (300 * 1024))}
    r = httpx.post(
        url + "/v1/files", files=files, data={"purpose": "assistants"}, headers=ALPHA, timeout=60
    )
    assert r.status_code == 413
    assert sorted(p.name for p in app.runtime.settings.files_dir.rglob("*")) == before
    assert_unharmed(url, beta_data)
