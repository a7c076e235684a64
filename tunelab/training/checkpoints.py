"""Checkpoint directories: a loadable model plus the state to resume training from it.

    <output_dir>/step-<N>/          LoRA: adapter_config.json + adapter_model.safetensors
                                    full: config.json + model.safetensors + tokenizer files
    <output_dir>/step-<N>/trainer_state.pt   optimizer, scheduler, step, epoch, rng

The model part is what inference loads (peft `PeftModel.from_pretrained(base, dir)` or
`from_pretrained(dir)`); the trainer state is only for resuming. Directories are
written under a temporary name and renamed, so a crash never leaves half a checkpoint
that looks complete.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "trainer_state.pt"


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


def prune(output_dir: Path, keep_steps: list[int]) -> list[Saved]:
    """Delete every checkpoint not in keep_steps; return what was removed."""
    removed = []
    for p in output_dir.glob("step-*"):
        step = p.name.removeprefix("step-")
        if step.isdigit() and int(step) not in keep_steps:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(Saved(int(step), p))
    return removed
