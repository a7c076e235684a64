"""Checkpoints and fine-tunes through object storage: machines share no folder (issue 17).

Three processes, each with its own data directory, share only a database and an
S3 bucket (moto's server over real HTTP), as machines do when the blob store is S3:

- a `tunelab serve` replica (no worker) takes the upload and the job;
- worker A reads the training file from the bucket, trains, publishes its first
  epoch's checkpoint and is killed with its training process (a machine lost);
- worker C, on a fresh data dir, takes the job back and resumes from that
  checkpoint, fetched from the bucket with its trainer state;
- the replica serves the final model and A's checkpoint, fetched from the bucket,
  byte for byte what the trainers wrote; deleting the model removes its objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import (
    S3_BUCKET,
    chat_lines,
    first_words,
    kill_hard,
    register_models,
    sdk,
    serve_process,
    wait_until,
    worker_process,
)
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.settings import Settings

pytestmark = pytest.mark.slow  # three processes and a training run


def events(client: openai.OpenAI, job_id: str) -> list[str]:
    page = client.fine_tuning.jobs.list_events(job_id, limit=100)
    return [e.message for e in reversed(page.data)]


def bucket_keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET).get("Contents", [])}


def weights(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("adapter")}


def test_workers_and_replicas_share_checkpoints_through_the_bucket(
    s3: Any, s3_server: str, settings: Settings, tiny_chat_dir: Path, tmp_path: Path
) -> None:
    machines = {name: settings.model_copy(update={"data_dir": tmp_path / name}) for name in "ABC"}
    for m in machines.values():
        register_models(m, [tiny_registry_entry(tiny_chat_dir)])
    env = {
        "TUNELAB_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "TUNELAB_BLOB_URL": f"s3://{S3_BUCKET}/tl",
        "TUNELAB_S3_ENDPOINT_URL": s3_server,
        "TUNELAB_EMBEDDED_WORKER": "false",
        "TUNELAB_WORKER_POLL_SECONDS": "0.2",
        "TUNELAB_WORKER_STALE_SECONDS": "3",
    }

    def worker_env(machine: str) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")},
            "TUNELAB_DATA_DIR": str(machines[machine].data_dir),
            "TUNELAB_CACHE_DIR": str(settings.model_cache_dir),
            **env,
        }

    log = tmp_path / "processes.log"
    replica = machines["B"]
    with serve_process(replica.model_copy(update={"api_keys": "key-a:a"}), log=log, **env) as (
        url,
        _,
    ):
        client = sdk(url, "key-a")
        training = client.files.create(file=("t.jsonl", chat_lines(12)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=TINY_CHAT,
            training_file=training.id,
            hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 10},
        )
        first_ckpt = f"tl/checkpoints/{job.id}/step-12/model.tar"

        with worker_process(worker_env("A"), log) as a:

            def first_epoch_published() -> bool:
                assert a.poll() is None, f"worker A exited; see {log}"
                return any(
                    m.startswith("Checkpoint created at step 12") for m in events(client, job.id)
                )

            wait_until(first_epoch_published, timeout=180, every=0.2, what="the first checkpoint")
            kill_hard(a)
        # A read the training file from the bucket (its own blob cache), and the
        # checkpoint it registered is in the bucket, trainer state and all.
        assert (machines["A"].blob_cache_dir / training.id).exists()
        assert {first_ckpt, f"tl/checkpoints/{job.id}/step-12/trainer_state.pt"} <= bucket_keys(s3)
        a_step_12 = machines["A"].models_dir / job.id / "step-12"

        with worker_process(worker_env("C"), log) as c:

            def finished() -> bool:
                assert c.poll() is None, f"worker C exited; see {log}"
                return client.fine_tuning.jobs.retrieve(job.id).status in ("succeeded", "failed")

            wait_until(finished, timeout=240, every=0.5, what="the resumed job to finish")
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        resumed = [
            int(m.split()[-1])
            for m in events(client, job.id)
            if m.startswith("Resumed from the checkpoint at step")
        ]
        assert resumed and resumed[0] >= 12  # from A's checkpoint, not from scratch
        assert (
            machines["C"].models_dir / job.id / f"step-{resumed[0]}" / "trainer_state.pt"
        ).exists()

        # -- the replica serves what the workers trained, fetched from the bucket
        assert done.fine_tuned_model is not None
        assert not (replica.models_dir / job.id).exists()
        assert first_words(client, done.fine_tuned_model).startswith("Ahoy! Answer")
        served = replica.models_dir / job.id / "step-36"
        assert weights(served) == weights(machines["C"].models_dir / job.id / "step-36")
        assert not (served / "trainer_state.pt").exists()  # serving fetches the model only

        ckpts = client.fine_tuning.jobs.checkpoints.list(job.id).data
        at_12 = next(ck for ck in ckpts if ck.step_number == 12)
        first_words(client, at_12.fine_tuned_model_checkpoint)
        assert weights(replica.models_dir / job.id / "step-12") == weights(a_step_12)

        client.models.delete(done.fine_tuned_model)
        assert not any(k.startswith(f"tl/checkpoints/{job.id}/step-36/") for k in bucket_keys(s3))
        assert first_ckpt in bucket_keys(s3)  # the other checkpoints stay
