"""Checkpoint directories: a loadable model plus the state to resume training from it.

    <output_dir>/step-<N>/          LoRA: adapter_config.json + adapter_model.safetensors
                                    full: config.json + model.safetensors + tokenizer files
    <output_dir>/step-<N>/trainer_state.pt   optimizer, scheduler, step, epoch, rng

The model part is what inference loads (peft `PeftModel.from_pretrained(base, dir)` or
`from_pretrained(dir)`); the trainer state is only for resuming. Directories are
written under a temporary name and renamed, so a crash never leaves half a checkpoint
that looks complete. With object storage (cfg.blob_url) each one is then published
there (tunelab.models.weights), and a job resumes from the newest published one,
fetched when this machine does not have it: the worker may be another machine.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.models.weights import STATE_FILE, Weights
from tunelab.training.config import TrainConfig


@dataclass
class Saved:
    step: int
    path: Path


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / f"step-{step}"


def save(
    output_dir: Path, step: int, model: Any, tokenizer: Any, method: str, state: dict[str, Any]
) -> Path:
    target = checkpoint_dir(output_dir, step)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if method == "full":
        tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def published(cfg: TrainConfig) -> Weights:
    """Where this job's checkpoints are published: its models dir (output_dir's
    parent) alone, or object storage too."""
    models_dir = Path(cfg.output_dir).parent
    if cfg.blob_url is None:
        return Weights(models_dir)
    from tunelab.s3blobs import S3BlobStore

    cache = Path(cfg.blob_cache_dir) if cfg.blob_cache_dir else models_dir.parent / "blob-cache"
    store = S3BlobStore(cfg.blob_url, cache, endpoint_url=cfg.s3_endpoint_url)
    return Weights(models_dir, store)


def resume_point(output_dir: Path, weights: Weights) -> Path | None:
    """The checkpoint a (re)started job continues from: the newest complete one,
    in object storage when checkpoints are published there (it is the truth across
    machines; this machine's folder may be missing or behind)."""
    if weights.remote is not None:
        return weights.resume_point(output_dir.name)
    saved = latest(output_dir)
    return saved.path if saved else None


def latest(output_dir: Path) -> Saved | None:
    """The newest complete checkpoint (epoch end or pause), if any."""
    found = [
        Saved(int(p.name.removeprefix("step-")), p)
        for p in output_dir.glob("step-*")
        if p.is_dir() and p.name.removeprefix("step-").isdigit() and (p / STATE_FILE).exists()
    ]
    return max(found, key=lambda s: s.step) if found else None


def load_state(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path / STATE_FILE, weights_only=False)
    return state


def prune(output_dir: Path, keep_steps: list[int], weights: Weights | None = None) -> list[Saved]:
    """Delete every checkpoint not in keep_steps, here and where `weights` publishes
    them (a checkpoint another machine wrote may only be there); return what was removed."""
    removed = {}
    for p in output_dir.glob("step-*"):
        step = p.name.removeprefix("step-")
        if step.isdigit() and int(step) not in keep_steps:
            shutil.rmtree(p, ignore_errors=True)
            removed[int(step)] = Saved(int(step), p)
    if weights is not None:
        for step_n in weights.prune(output_dir.name, keep_steps):
            removed.setdefault(step_n, Saved(step_n, checkpoint_dir(output_dir, step_n)))
    return [removed[n] for n in sorted(removed)]
