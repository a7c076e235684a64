"""Files API through the official openai SDK over real HTTP."""

from __future__ import annotations

import hashlib
import json

import openai
import pytest

from tests.support import run_server, sdk

pytestmark = pytest.mark.api

GOOD = "\n".join(
    json.dumps(
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
    )
    for i in range(12)
).encode()


def test_upload_roundtrip_bytes_identical(client: openai.OpenAI, settings) -> None:
    data = "问：你好\n答：您好！\n".encode() + bytes(range(256))
    f = client.files.create(file=("notes.txt", data), purpose="assistants")
    assert f.id.startswith("file-") and f.bytes == len(data) and f.status == "processed"
    assert f.filename == "notes.txt" and f.purpose == "assistants"
    assert client.files.content(f.id).content == data
    assert client.files.retrieve(f.id).model_dump() == f.model_dump()
    # Stored atomically with its hash; no temp files left behind.
    stored = list(settings.files_dir.iterdir())
    assert [p.name for p in stored] == [f.id]
    assert hashlib.sha256(stored[0].read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_list_filters_orders_and_pages(client: openai.OpenAI) -> None:
    ids = [
        client.files.create(file=(f"f{i}.jsonl", GOOD), purpose="fine-tune").id for i in range(5)
    ]
    other = client.files.create(file=("x.txt", b"x"), purpose="assistants").id
    page = client.files.list(purpose="fine-tune", limit=2)
    assert len(page.data) == 2 and page.has_more
    # The SDK follows `after` cursors through every page.
    assert [f.id for f in client.files.list(purpose="fine-tune", limit=2)] == ids[::-1]
    assert [f.id for f in client.files.list(purpose="fine-tune", order="asc")] == ids
    assert other in [f.id for f in client.files.list()]


def test_delete_then_404(client: openai.OpenAI, settings) -> None:
    f = client.files.create(file=("a.txt", b"abc"), purpose="assistants")
    deleted = client.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(openai.NotFoundError) as e:
        client.files.retrieve(f.id)
    assert e.value.body["param"] == "id"
    assert not list(settings.files_dir.iterdir())


def test_fine_tune_upload_validates(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("train.csv", b"prompt,completion\n"), purpose="fine-tune")
    assert e.value.body["param"] == "file" and ".jsonl" in e.value.message
    good = client.files.create(file=("train.jsonl", GOOD), purpose="fine-tune")
    assert good.status == "processed" and good.status_details is None
    bad = GOOD + b'\n{"messages": [}\n'
    f = client.files.create(file=("bad.jsonl", bad), purpose="fine-tune")
    assert f.status == "error" and "13" in f.status_details


def test_bad_purpose_and_unknown_id(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("a.txt", b"a"), purpose="nonsense")  # type: ignore[arg-type]
    assert e.value.body["param"] == "purpose"
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-doesnotexist")


def test_upload_size_limit(settings) -> None:
    settings.max_upload_bytes = 1000
    with run_server(settings) as url:
        client = sdk(url)
        with pytest.raises(openai.APIStatusError) as e:
            client.files.create(file=("big.txt", b"x" * 5000), purpose="assistants")
    assert e.value.status_code == 413 and e.value.body["param"] == "file"
    assert not list(settings.files_dir.iterdir())
