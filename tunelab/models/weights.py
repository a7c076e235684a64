"""Fine-tuned weights (checkpoints and final models) in the blob store, and this
machine's copies of them.

A job writes each checkpoint as a directory `<models dir>/<job>/step-<N>`
(tunelab.training.checkpoints); a job's final model is its last checkpoint (one
catalog row, one directory). Catalog rows and jobs name weights by their place
relative to the models dir (`<job>/step-<N>`), and every process reads them under
its own data dir:

- Local blob store (the default): that directory is the published copy. It was
  renamed into place whole, so there is nothing to copy and nothing to fetch.
- Object storage (TUNELAB_BLOB_URL): the training process publishes each
  checkpoint as two objects,

      checkpoints/<job>/step-<N>/trainer_state.pt   for resuming only
      checkpoints/<job>/step-<N>/model.tar          the loadable model

  model.tar is written last and marks the checkpoint complete. One archive rather
  than one object per file because an object is published whole or not at all, so
  a checkpoint is atomic without a manifest protocol, and a reader downloads it in
  one request; it is an uncompressed tar because safetensors do not compress. The
  trainer state is its own object because serving never needs it (for a full
  fine-tune, AdamW's state is twice the weights). A crashed upload leaves at most
  a trainer state without its model.tar: not a checkpoint to any reader, and
  removed when the job next prunes.

  A process that needs weights it does not have (a replica serving an `ft:` model,
  a worker resuming a job or continuing a fine-tune) downloads model.tar, unpacks it
  into a temporary folder next to the target and renames the folder into place:
  a reader sees all of it or none, and of two racing fetches (threads or
  processes) the second rename fails and its copy is dropped.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
from pathlib import Path

from tunelab.blobs import BlobStore, temp_dir, temp_file

PREFIX = "checkpoints"
MODEL_ARCHIVE = "model.tar"
# The resume state of a checkpoint (optimizer, scheduler, step, rng), next to the model files.
STATE_FILE = "trainer_state.pt"


class Weights:
    def __init__(self, models_dir: Path, remote: BlobStore | None = None) -> None:
        self.models_dir = models_dir
        # None: the models dir itself is the store (tunelab.blobs.LocalBlobStore deployments).
        self.remote = remote
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # -- names

    def ref(self, path: Path) -> str:
        """What a catalog row stores for `path`: relative to the models dir when
        under it (every process resolves it under its own), else absolute."""
        path = Path(path)
        try:
            return path.resolve().relative_to(self.models_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def path(self, ref: str) -> Path:
        """Where `ref` lives on this machine (an absolute ref stays as it is)."""
        return self.models_dir / ref

    def _ref_of(self, path: Path) -> str | None:
        """The ref of a local path under the models dir, or None."""
        ref = self.ref(path)
        return None if Path(ref).is_absolute() or ref == "." else ref

    @staticmethod
    def _key(ref: str, name: str) -> str:
        return f"{PREFIX}/{ref}/{name}"

    # -- reading

    def local(self, path: Path) -> Path:
        """`path` (a model directory under the models dir), fetched from the blob
        store first when this machine does not have it. Returns `path` either way:
        weights that exist nowhere are the caller's "weights missing" error."""
        if self.remote is None:  # local store: nothing to do (each request passes here)
            return path
        ref = self._ref_of(path)
        if ref is None or path.is_dir():
            return path
        with self._lock(ref):
            if not path.is_dir():
                self._fetch_model(ref, path)
        return path

    def resume_point(self, job_id: str) -> Path | None:
        """The newest complete published checkpoint of a job, with its trainer state,
        as a local directory; None when the job has none (object storage only)."""
        assert self.remote is not None, "with a local store, read the job's directory"
        steps = self.published_steps(job_id)
        if not steps:
            return None
        ref = f"{job_id}/step-{steps[-1]}"
        path = self.local(self.path(ref))
        state = path / STATE_FILE
        if path.is_dir() and not state.exists():  # fetched for serving: the model part only
            with self._lock(ref):
                fd, tmp = temp_file(path, "download")
                os.close(fd)
                try:
                    if self.remote.get_file(self._key(ref, STATE_FILE), tmp):
                        os.replace(tmp, state)
                finally:
                    tmp.unlink(missing_ok=True)
        return path if state.exists() else None

    def published_steps(self, job_id: str) -> list[int]:
        """The steps of a job's complete published checkpoints, ascending."""
        return self._steps(job_id, complete=True)

    def _steps(self, job_id: str, *, complete: bool) -> list[int]:
        """The steps a job has objects of (with complete: only those with a model.tar)."""
        if self.remote is None:
            return []
        steps = set()
        for key in self.remote.keys(f"{PREFIX}/{job_id}/step-"):
            parts = key.split("/")  # checkpoints, job, step-N, file
            step = parts[2].removeprefix("step-")
            if len(parts) == 4 and step.isdigit() and (parts[3] == MODEL_ARCHIVE or not complete):
                steps.add(int(step))
        return sorted(steps)

    def _fetch_model(self, ref: str, path: Path) -> None:
        assert self.remote is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, archive = temp_file(path.parent, "download")
        os.close(fd)
        unpacked = temp_dir(path.parent, "download")
        try:
            if not self.remote.get_file(self._key(ref, MODEL_ARCHIVE), archive):
                return
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")  # plain files only, inside `unpacked`
            try:
                os.rename(unpacked, path)
            except OSError:
                if not path.is_dir():  # not another fetch winning the race: a real error
                    raise
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(unpacked, ignore_errors=True)

    def _lock(self, ref: str) -> threading.Lock:
        # One download per ref in a process; across processes the rename decides.
        with self._locks_lock:
            return self._locks.setdefault(ref, threading.Lock())

    # -- writing

    def publish(self, path: Path) -> None:
        """Publish a complete checkpoint directory (under the models dir) to the
        blob store: the trainer state, then model.tar, which marks it complete."""
        if self.remote is None:
            return
        ref = self._ref_of(path)
        if ref is None:
            return
        state = path / STATE_FILE
        if state.exists():
            self.remote.put_file(self._key(ref, STATE_FILE), state)
        fd, archive = temp_file(path.parent, "part")
        try:
            with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
                for f in sorted(path.iterdir()):
                    if f.name != STATE_FILE and not f.name.startswith("."):
                        tar.add(f, arcname=f.name)
            self.remote.put_file(self._key(ref, MODEL_ARCHIVE), archive)
        finally:
            archive.unlink(missing_ok=True)

    def publish_file(self, path: Path) -> None:
        """Publish one file of a job's models folder that is no checkpoint (a DPO
        job's reference log-probabilities) under `checkpoints/<job>/<name>`."""
        ref = self._ref_of(path)
        if self.remote is not None and ref is not None:
            self.remote.put_file(f"{PREFIX}/{ref}", path)

    def fetch_file(self, path: Path) -> bool:
        """Make sure this machine has a file `publish_file` published, fetching it if
        needed; whether it exists now."""
        ref = self._ref_of(path)
        if self.remote is None or ref is None or path.exists():
            return path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path.parent, "download")
        os.close(fd)
        try:
            if self.remote.get_file(f"{PREFIX}/{ref}", tmp):
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path.exists()

    def unpublish(self, path: Path) -> None:
        """Remove a checkpoint's objects (model.tar first: it stops being one at once)."""
        ref = self._ref_of(path)
        if self.remote is None or ref is None:
            return
        self.remote.delete(self._key(ref, MODEL_ARCHIVE))
        self.remote.delete(self._key(ref, STATE_FILE))

    def prune(self, job_id: str, keep_steps: list[int]) -> list[int]:
        """Remove a job's published checkpoints not in `keep_steps`, and what crashed
        uploads left (a trainer state without its model.tar); the steps removed."""
        gone = [step for step in self._steps(job_id, complete=False) if step not in keep_steps]
        for step in gone:
            self.unpublish(self.path(f"{job_id}/step-{step}"))
        return gone

    def remove(self, path: Path) -> None:
        """Delete weights: this machine's copy (only under the models dir) and the
        published one."""
        if self._ref_of(path) is None:
            return
        self.unpublish(path)
        shutil.rmtree(path, ignore_errors=True)
