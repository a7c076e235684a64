"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), through boto3.

`TUNELAB_BLOB_URL=s3://bucket/prefix` selects it (docs/deployment.md); every API
replica and worker pointed at the same bucket sees the same files. Credentials
and region come from boto3's usual chain (AWS_ACCESS_KEY_ID, ~/.aws, an instance
role); `TUNELAB_S3_ENDPOINT_URL` names a non-AWS server.

Readers of a blob need a local path (parsers, training data staging, file
downloads), so each process keeps a read-through cache of the blobs it used:
keys are never rewritten (a file id names one content for life), so a cached
copy stays valid until the blob is deleted. Writes are atomic on both sides:
the upload is hashed, size-checked and `check`ed in a local temporary file,
and S3 publishes an object only when its upload completes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from tunelab.blobs import Stored, check_key, spooled, temp_file


class S3BlobStore:
    def __init__(
        self,
        url: str,
        cache_dir: Path,
        *,
        endpoint_url: str | None = None,
        client: Any = None,  # a boto3 S3 client (third-party, untyped)
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"blob URL must look like s3://bucket/prefix, not {url!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self._s3 = client

    def _object(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        max_bytes: int | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> Stored:
        name = self._object(key)
        spool = spooled(stream, self.cache_dir, key, max_bytes=max_bytes, check=check)
        with spool as (tmp, stored):
            # upload_file switches to a multipart upload for large files; the object
            # appears only when every part is in.
            self._s3.upload_file(str(tmp), self.bucket, name)
            os.replace(tmp, self.cache_dir / key)  # this process reads it back locally
        return stored

    def local_path(self, key: str) -> Path:
        """The cached copy, downloaded on first use. Like the local store, the path
        of a blob that does not exist is returned without a file behind it."""
        name = self._object(key)
        cached = self.cache_dir / key
        if cached.exists():
            return cached
        fd, tmp = temp_file(self.cache_dir, "download")
        os.close(fd)
        try:
            self._s3.download_file(self.bucket, name, str(tmp))
            os.replace(tmp, cached)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            if not _is_missing(e):
                raise
        return cached

    def put_file(self, key: str, path: Path) -> None:
        # Multipart for large files, like `put`: the object appears only when complete.
        self._s3.upload_file(str(path), self.bucket, self._object(key))

    def get_file(self, key: str, dest: Path) -> bool:
        try:
            self._s3.download_file(self.bucket, self._object(key), str(dest))
        except Exception as e:
            if _is_missing(e):
                return False
            raise
        return True

    def keys(self, prefix: str) -> list[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start + prefix
        )
        return sorted(
            str(obj["Key"]).removeprefix(start)
            for page in pages
            for obj in page.get("Contents", [])
        )

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._object(key))
        (self.cache_dir / key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._object(key))
        except Exception as e:
            if _is_missing(e):
                return False
            raise
        return True


def _is_missing(e: Exception) -> bool:
    """A botocore ClientError for an absent object (404 / NoSuchKey)."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")
