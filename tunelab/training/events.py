"""The training process's two channels to its worker: an events file out, a control file in.

Events are JSON lines appended to `<job dir>/events.jsonl`, one object per line with a
`type`:

    message             {level, message}
    metrics             {step, total_steps, train_loss, train_mean_token_accuracy, learning_rate,
                         [valid_loss, valid_mean_token_accuracy],
                         [full_valid_loss, full_valid_mean_token_accuracy],
                         [classification_accuracy, classification_weighted_f1],
                         trained_tokens, elapsed_s}
    checkpoint          {step, path, metrics}           an epoch-end model was saved
    checkpoint_removed  {step, path}                    pruned (older than the last 3)
    paused              {step, path}                    resumable state saved, exiting
    done                {step, path, trained_tokens}    training finished
    error               {message}                       training failed

The worker asks the process to stop by writing "cancel" or "pause" into
`<job dir>/control` (or by SIGTERM, which means cancel); the loop checks between
steps. The process also stops if its parent worker dies, so an orphan never trains on.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
CONTROL_FILE = "control"
CONFIG_FILE = "config.json"


class EventWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")

    def emit(self, type_: str, **data: Any) -> None:
        data = {"type": type_, "time": time.time(), **data}
        self._fh.write(json.dumps(data, ensure_ascii=False) + "\n")
        self._fh.flush()

    def message(self, message: str, level: str = "info") -> None:
        self.emit("message", level=level, message=message)

    def close(self) -> None:
        self._fh.close()


def read_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete lines appended since `offset`, and the new offset (a partial last line waits)."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1
    lines = chunk[:end].decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()], offset + end


class Control:
    """Why the loop should stop now, if it should: "cancel", "pause" or None."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / CONTROL_FILE
        self._signalled = False
        self._parent = os.getppid()

    def install_signal_handler(self) -> None:
        def _on_term(signum: int, frame: Any) -> None:
            self._signalled = True

        signal.signal(signal.SIGTERM, _on_term)

    def request(self) -> str | None:
        if self._signalled or os.getppid() != self._parent:
            return "cancel"
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        return text if text in ("cancel", "pause") else None


def write_control(job_dir: Path, request: str) -> None:
    tmp = job_dir / (CONTROL_FILE + ".tmp")
    tmp.write_text(request)
    os.replace(tmp, job_dir / CONTROL_FILE)
