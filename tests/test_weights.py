"""Fine-tuned weights through the blob store (tunelab.models.weights).

Two `Weights` on different models dirs over one store stand for two machines: what
one publishes the other fetches whole, racing fetches leave one complete copy, a
failed or absent download leaves nothing that looks like a checkpoint, and with a
local store nothing is copied at all. The store here is `LocalBlobStore` in its own
folder (the Protocol is the seam; tests/test_blobs_s3.py runs the S3 backend).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tunelab.blobs import LocalBlobStore
from tunelab.models.weights import MODEL_ARCHIVE, STATE_FILE, Weights

pytestmark = pytest.mark.unit

JOB = "ftjob-abc"


def write_checkpoint(models_dir: Path, step: int, *, seed: int = 0) -> Path:
    """A checkpoint folder as tunelab.training.checkpoints writes one."""
    path = models_dir / JOB / f"step-{step}"
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text('{"r": 4}')
    (path / "adapter_model.safetensors").write_bytes(os.urandom(4096) + bytes([seed]))
    (path / STATE_FILE).write_bytes(os.urandom(2048))
    return path


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def leftovers(models_dir: Path) -> list[str]:
    """Temporary files or folders of a write or a download that remain."""
    return [p.name for p in models_dir.rglob(".*")]


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "bucket")


def test_a_published_checkpoint_is_fetched_whole_on_another_machine(
    store: LocalBlobStore, tmp_path: Path
) -> None:
    a = Weights(tmp_path / "a", store)
    b = Weights(tmp_path / "b", store)
    written = write_checkpoint(a.models_dir, 12)
    a.publish(written)
    assert store.keys("checkpoints/") == [
        f"checkpoints/{JOB}/step-12/{MODEL_ARCHIVE}",
        f"checkpoints/{JOB}/step-12/{STATE_FILE}",
    ]
    assert a.ref(written) == f"{JOB}/step-12"  # what catalog rows store

    # Serving: the model part only (the trainer state is for resuming).
    fetched = b.local(b.path(f"{JOB}/step-12"))
    assert fetched == b.models_dir / JOB / "step-12"
    expected = files_of(written)
    state = expected.pop(STATE_FILE)
    assert files_of(fetched) == expected
    assert b.local(fetched) == fetched  # a second use reads the local copy

    # Resuming: the newest checkpoint, now with its trainer state.
    assert b.resume_point(JOB) == fetched
    assert (fetched / STATE_FILE).read_bytes() == state
    assert leftovers(b.models_dir) == [] and leftovers(a.models_dir) == []


def test_resume_takes_the_newest_complete_checkpoint(store: LocalBlobStore, tmp_path: Path) -> None:
    a = Weights(tmp_path / "a", store)
    b = Weights(tmp_path / "b", store)
    assert b.resume_point(JOB) is None
    for step in (12, 24):
        a.publish(write_checkpoint(a.models_dir, step, seed=step))
    # A crashed upload of step 36: its trainer state went up, its model.tar never did.
    store.put_file(
        f"checkpoints/{JOB}/step-36/{STATE_FILE}", a.models_dir / JOB / "step-24" / STATE_FILE
    )

    assert b.published_steps(JOB) == [12, 24]
    resumed = b.resume_point(JOB)
    assert resumed == b.models_dir / JOB / "step-24"
    assert files_of(resumed) == files_of(a.models_dir / JOB / "step-24")
    # Nothing of step 36 is a checkpoint to a reader.
    missing = b.local(b.path(f"{JOB}/step-36"))
    assert not missing.exists()

    # Pruning removes what is not kept, and the half-uploaded step with it.
    assert a.prune(JOB, [24]) == [12, 36]
    assert store.keys("checkpoints/") == [
        f"checkpoints/{JOB}/step-24/{MODEL_ARCHIVE}",
        f"checkpoints/{JOB}/step-24/{STATE_FILE}",
    ]
    a.remove(a.models_dir / JOB / "step-24")
    assert store.keys("checkpoints/") == []
    assert not (a.models_dir / JOB / "step-24").exists()


class GatedStore(LocalBlobStore):
    """A store whose downloads wait until `parties` of them are under way, so racing
    fetches really overlap; `fail` makes every download break half-way."""

    def __init__(self, root: Path, parties: int) -> None:
        super().__init__(root)
        self.gate = threading.Barrier(parties, timeout=30)
        self.downloads = 0
        self.fail = False

    def get_file(self, key: str, dest: Path) -> bool:
        if key.endswith(MODEL_ARCHIVE):
            self.downloads += 1
            if self.fail:
                dest.write_bytes(b"half an arch")
                raise ConnectionError("connection reset")
            self.gate.wait()
        return super().get_file(key, dest)


def test_racing_fetches_leave_one_complete_copy(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "bucket", parties=2)
    written = write_checkpoint(tmp_path / "trainer", 12)
    Weights(tmp_path / "trainer", store).publish(written)
    # Two Weights on one models dir: two processes (no lock shared; the rename decides).
    machines = [Weights(tmp_path / "replica", store) for _ in range(2)]
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch(w: Weights) -> None:
        try:
            results.append(w.local(w.path(f"{JOB}/step-12")))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=fetch, args=(w,)) for w in machines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert store.downloads == 2  # both really downloaded
    target = tmp_path / "replica" / JOB / "step-12"
    assert results == [target, target]
    expected = files_of(written)
    expected.pop(STATE_FILE)
    assert files_of(target) == expected
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "step-12"
    ]  # the loser's copy is gone


def test_threads_of_one_process_download_once(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "bucket", parties=1)
    Weights(tmp_path / "trainer", store).publish(write_checkpoint(tmp_path / "trainer", 12))
    replica = Weights(tmp_path / "replica", store)
    threads = [
        threading.Thread(target=replica.local, args=(replica.path(f"{JOB}/step-12"),))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert store.downloads == 1
    assert (replica.path(f"{JOB}/step-12") / "adapter_model.safetensors").exists()


def test_a_broken_download_leaves_nothing(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "bucket", parties=1)
    Weights(tmp_path / "trainer", store).publish(write_checkpoint(tmp_path / "trainer", 12))
    replica = Weights(tmp_path / "replica", store)
    target = replica.path(f"{JOB}/step-12")
    store.fail = True
    with pytest.raises(ConnectionError):
        replica.local(target)
    assert not target.exists()
    assert leftovers(replica.models_dir) == []
    store.fail = False
    assert (replica.local(target) / "adapter_config.json").read_text() == '{"r": 4}'


def test_with_a_local_store_the_models_dir_is_the_store(tmp_path: Path) -> None:
    weights = Weights(tmp_path / "models")  # what the runtime builds for LocalBlobStore
    written = write_checkpoint(weights.models_dir, 12)
    before = files_of(written)
    weights.publish(written)  # nothing to copy
    assert weights.local(written) == written
    assert files_of(written) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert weights.prune(JOB, []) == []  # the training loop prunes the folder itself
    # Weights outside the models dir (a user's own folder) are referred to as they are
    # and never deleted.
    own = tmp_path / "elsewhere"
    own.mkdir()
    assert weights.ref(own) == str(own)
    assert weights.path(str(own)) == own
    weights.remove(own)
    assert own.exists()
    weights.remove(weights.models_dir)  # never the models dir itself
    assert written.exists()


def test_a_dpo_reference_travels_with_the_job(store: LocalBlobStore, tmp_path: Path) -> None:
    a = Weights(tmp_path / "a", store)
    b = Weights(tmp_path / "b", store)
    saved = a.models_dir / JOB / "train_reference.pt"
    assert not a.fetch_file(saved)  # nothing published yet: the trainer computes it
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(os.urandom(1000))
    a.publish_file(saved)
    on_b = b.models_dir / JOB / "train_reference.pt"
    assert b.fetch_file(on_b)
    assert on_b.read_bytes() == saved.read_bytes()
    assert b.published_steps(JOB) == []  # not a checkpoint
    assert leftovers(b.models_dir) == []
