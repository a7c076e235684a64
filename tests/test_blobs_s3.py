"""Files in an S3-compatible bucket: moto's S3 server over real HTTP, boto3 in tunelab.

Uploads through the API land in the bucket, download back identical on this
replica and on a second one (another data dir, so another blob cache, on the same
database and bucket), refusals leave nothing behind, and deletes remove the object.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import S3_BUCKET as BUCKET
from tests.support import chat_lines, run_server, sdk
from tunelab.settings import Settings

pytestmark = pytest.mark.api


def keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_uploads_live_in_the_bucket_and_every_replica_reads_them(
    s3: Any, s3_server: str, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={
            "blob_url": f"s3://{BUCKET}/files",
            "s3_endpoint_url": s3_server,
            "embedded_worker": False,
            "max_upload_bytes": 1_000_000,
        }
    )
    data = os.urandom(600_000)  # binary, larger than one read chunk
    with run_server(settings) as url:
        client = sdk(url)
        f = client.files.create(file=("blob.bin", io.BytesIO(data)), purpose="user_data")
        assert keys(s3) == {f"files/{f.id}"}
        assert s3.get_object(Bucket=BUCKET, Key=f"files/{f.id}")["Body"].read() == data
        assert client.files.content(f.id).read() == data

        # The fine-tune validator reads the complete upload before it is published:
        # a refused file leaves nothing in the bucket.
        with pytest.raises(openai.BadRequestError):
            client.files.create(file=("t.jsonl", io.BytesIO(b"not json\n")), purpose="fine-tune")
        good = client.files.create(file=("t.jsonl", io.BytesIO(chat_lines(3))), purpose="fine-tune")
        assert good.status == "processed"

        with pytest.raises(openai.APIStatusError) as e:  # too large: refused, nothing stored
            client.files.create(file=("big.bin", io.BytesIO(bytes(1_000_001))), purpose="user_data")
        assert e.value.status_code == 413
        assert keys(s3) == {f"files/{f.id}", f"files/{good.id}"}

    # Another replica: its own (empty) blob cache, the same database and bucket.
    replica = settings.model_copy(
        update={"data_dir": tmp_path / "replica", "database_url": settings.db_url}
    )
    with run_server(replica) as url:
        client = sdk(url)
        assert client.files.content(f.id).read() == data
        assert (replica.blob_cache_dir / f.id).read_bytes() == data
        client.files.delete(f.id)
        assert f"files/{f.id}" not in keys(s3)
        with pytest.raises(openai.NotFoundError):
            client.files.content(f.id)


def test_files_publish_list_and_download_under_folder_keys(
    s3: Any, s3_server: str, tmp_path: Path
) -> None:
    from tunelab.s3blobs import S3BlobStore

    store = S3BlobStore(f"s3://{BUCKET}/data", tmp_path / "cache", endpoint_url=s3_server)
    source = tmp_path / "state.pt"
    source.write_bytes(os.urandom(300_000))
    store.put_file("checkpoints/job/step-3/trainer_state.pt", source)
    store.put_file("checkpoints/job/step-12/model.tar", source)
    assert keys(s3) == {
        "data/checkpoints/job/step-3/trainer_state.pt",
        "data/checkpoints/job/step-12/model.tar",
    }
    assert store.keys("checkpoints/job/step-") == [
        "checkpoints/job/step-12/model.tar",
        "checkpoints/job/step-3/trainer_state.pt",
    ]
    assert store.keys("checkpoints/other/") == []
    dest = tmp_path / "copy"
    assert store.get_file("checkpoints/job/step-12/model.tar", dest)
    assert dest.read_bytes() == source.read_bytes()
    assert not store.get_file("checkpoints/job/step-99/model.tar", tmp_path / "none")
    assert list((tmp_path / "cache").iterdir()) == []  # whole-file transfers keep no cache copy
    with pytest.raises(ValueError):
        store.put_file("checkpoints/../escape", source)
