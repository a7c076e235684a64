"""Temporary files of writes a kill interrupted are removed at the next start, and only
those: a live writer's, on this machine or another replica sharing the directory, stays
(issue 11, follow-up; tests/test_crash_recovery.py checks a real kill)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab import blobs
from tunelab.blobs import TEMP_GRACE_SECONDS, sweep_temp_files, temp_file
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.unit


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def touch(path: Path, age: float = 0) -> Path:
    path.write_bytes(b"half")
    if age:
        t = path.stat().st_mtime - age
        os.utime(path, (t, t))
    return path


def test_only_files_no_live_writer_will_finish_are_swept(tmp_path: Path) -> None:
    here = blobs._machine()
    fd, mine = temp_file(tmp_path, "upload")  # this process: alive
    os.close(fd)
    live_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        orphans = [
            touch(tmp_path / f".upload-{dead_pid()}@{here}~abc"),
            touch(tmp_path / f".part-{dead_pid()}@{here}~def"),
            touch(tmp_path / f".download-{dead_pid()}@{here}~ghi"),
            touch(tmp_path / ".upload-7@other-host.1~old", age=TEMP_GRACE_SECONDS + 60),
            touch(tmp_path / ".upload-ownerless", age=TEMP_GRACE_SECONDS + 60),
        ]
        kept = [
            mine,
            touch(tmp_path / f".upload-{live_child.pid}@{here}~jkl"),
            touch(tmp_path / ".upload-7@other-host.1~new", age=60),  # a replica's, writing
            touch(tmp_path / ".upload-ownerless-new"),
            touch(tmp_path / "file-abc"),  # a stored blob
        ]
        assert sorted(sweep_temp_files(tmp_path)) == sorted(orphans)
        assert sorted(tmp_path.iterdir()) == sorted(kept)
    finally:
        live_child.kill()
        live_child.wait()


def test_starting_the_runtime_sweeps_files_and_upload_parts(settings: Settings) -> None:
    here = blobs._machine()
    settings.files_dir.mkdir(parents=True)
    part_dir = settings.data_dir / "uploads" / "upload_x"
    part_dir.mkdir(parents=True)
    # A checkpoint fetch (tunelab.models.weights) killed while unpacking: its folder.
    job_dir = settings.models_dir / "ftjob-x"
    unpacking = job_dir / f".download-{dead_pid()}@{here}~c"
    unpacking.mkdir(parents=True)
    touch(unpacking / "adapter_model.safetensors")
    checkpoint = job_dir / "step-3"
    checkpoint.mkdir()
    left = [
        touch(settings.files_dir / f".upload-{dead_pid()}@{here}~a"),
        touch(part_dir / f".part-{dead_pid()}@{here}~b"),
        touch(job_dir / f".part-{dead_pid()}@{here}~d"),  # a checkpoint archive being sent
        unpacking,
    ]
    done_part = touch(part_dir / "part_1")
    with build_runtime(settings, embedded_worker=False):
        assert not any(p.exists() for p in left)
        assert done_part.exists()
        assert checkpoint.exists()
