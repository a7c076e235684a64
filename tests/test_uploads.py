"""The upload store (contract §13): parts on disk, assembled atomically into a File."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator

import pytest

from tunelab.blobs import LocalBlobStore
from tunelab.db.base import Database, migrate
from tunelab.errors import InvalidRequest
from tunelab.files import FileStore
from tunelab.settings import Settings
from tunelab.uploads import UploadStore

P = "proj"
DATA = "".join(
    json.dumps(
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
    )
    + "\n"
    for i in range(12)
).encode()


pytestmark = pytest.mark.unit


@pytest.fixture
def store(settings: Settings) -> Iterator[UploadStore]:
    migrate(settings.db_url)
    db = Database(settings.db_url)
    files = FileStore(db, LocalBlobStore(settings.files_dir), max_bytes=1 << 30)
    yield UploadStore(db, files, settings.data_dir / "uploads")
    db.dispose()


def parts_of(data: bytes, n: int) -> list[bytes]:
    size = -(-len(data) // n)
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_parts_in_the_named_order_make_one_validated_file(store: UploadStore) -> None:
    up = store.create(
        P, filename="train.jsonl", purpose="fine-tune", mime_type="text/jsonl", size=len(DATA)
    )
    chunks = parts_of(DATA, 3)
    ids = [store.add_part(P, up.id, io.BytesIO(c)).id for c in chunks]
    # Sent in any order; part_ids says the order.
    done, file = store.complete(P, up.id, ids, md5=hashlib.md5(DATA).hexdigest())
    assert done.status == "completed" and done.file_id == file.id
    assert file.status == "processed" and file.bytes == len(DATA) and file.filename == "train.jsonl"
    assert store.files.path(file).read_bytes() == DATA
    assert not (store.root / up.id).exists(), "parts are removed once assembled"
    with pytest.raises(InvalidRequest) as e:
        store.add_part(P, up.id, io.BytesIO(b"more"))
    assert e.value.code == "invalid_upload_status"


def test_wrong_sizes_orders_and_checksums_are_refused_by_name(store: UploadStore) -> None:
    up = store.create(
        P, filename="t.jsonl", purpose="fine-tune", mime_type="text/jsonl", size=len(DATA)
    )
    a, b = (store.add_part(P, up.id, io.BytesIO(c)).id for c in parts_of(DATA, 2))
    for part_ids, md5, param in [
        ([a], None, "part_ids"),  # too few bytes
        ([a, a], None, "part_ids"),  # a part twice
        ([a, "part_nope"], None, "part_ids"),
        ([a, b], "0" * 32, "md5"),
    ]:
        with pytest.raises(InvalidRequest) as e:
            store.complete(P, up.id, part_ids, md5=md5)
        assert e.value.param == param
    done, _ = store.complete(P, up.id, [a, b])
    assert done.status == "completed"


def test_content_that_is_not_jsonl_is_refused_whole(store: UploadStore) -> None:
    csv = b"prompt,completion\nhello,world\nfoo,bar\n"
    up = store.create(
        P, filename="file", purpose="fine-tune", mime_type="text/jsonl", size=len(csv)
    )
    part = store.add_part(P, up.id, io.BytesIO(csv)).id
    with pytest.raises(InvalidRequest) as e:
        store.complete(P, up.id, [part])
    assert e.value.param == "file" and ".jsonl" in e.value.message
    assert store.files.list(P, purpose=None, after=None, limit=10, order="desc")[0] == []
    assert store.get(P, up.id).status == "pending"


def test_create_checks_and_cancel(store: UploadStore) -> None:
    for kwargs, param in [
        ({"size": 0}, "bytes"),
        ({"mime_type": "image/png"}, "mime_type"),
        ({"purpose": "nope"}, "purpose"),
    ]:
        args = {
            "filename": "t.jsonl",
            "purpose": "batch",
            "mime_type": "text/jsonl",
            "size": 10,
            **kwargs,
        }
        with pytest.raises(InvalidRequest) as e:
            store.create(P, **args)
        assert e.value.param == param
    up = store.create(P, filename="t.jsonl", purpose="batch", mime_type="text/jsonl", size=4)
    store.add_part(P, up.id, io.BytesIO(b"abcd"))
    assert store.cancel(P, up.id).status == "cancelled"
    assert not (store.root / up.id).exists()
    with pytest.raises(InvalidRequest):
        store.complete(P, up.id, [])


def test_an_expired_upload_takes_nothing(store: UploadStore) -> None:
    up = store.create(P, filename="t.jsonl", purpose="batch", mime_type="text/jsonl", size=4)
    with store.db.begin() as s:
        s.get(type(up), up.id).expires_at = 0  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest) as e:
        store.add_part(P, up.id, io.BytesIO(b"abcd"))
    assert "expired" in e.value.message
