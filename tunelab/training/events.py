"""The training process's two channels to its worker: an events file out, a control file in.

Events are typed records, one per kind, written as JSON lines to
`<job dir>/events.jsonl` by the training process and read back by the worker with
the same classes, so both sides of the process boundary agree on every field:

    MessageEvent            a line for the job's event log (level info | warn | error)
    MetricsEvent            one optimizer step: StepMetrics + trained tokens and timing
    CheckpointEvent         an epoch-end model was saved (with the metrics of its step)
    CheckpointRemovedEvent  an old epoch checkpoint was pruned (only the last few are kept)
    PausedEvent             resumable state saved, the process is exiting
    DoneEvent               training finished; `path` holds the final model
    ErrorEvent              training failed; `message` says why

`encode` and `decode` are the only JSON code. A line that does not decode (garbled,
truncated by a crash, or from a kind this version does not know) is logged and
skipped by `read_events`: a worker never stops supervising over one bad line.

The worker asks the process to stop by writing "cancel" or "pause" into
`<job dir>/control` (or by SIGTERM, which means cancel); the loop checks between
steps. The process also stops if its parent worker dies, so an orphan never trains on.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

EVENTS_FILE = "events.jsonl"
CONTROL_FILE = "control"
CONFIG_FILE = "config.json"
# The pid of the worker that supervises a torchrun-launched job (see Control).
SUPERVISOR_ENV = "TUNELAB_SUPERVISOR_PID"

Level = Literal["info", "warn", "error"]

log = logging.getLogger("tunelab.training.events")


class _Record(BaseModel):
    # Extra fields are ignored rather than refused: a worker reading a newer
    # process's line still gets every field it knows.
    model_config = ConfigDict(frozen=True, extra="ignore")


class StepMetrics(_Record):
    """The metrics of one optimizer step (contract §2.5 `data` of a metrics event)."""

    step: int
    total_steps: int
    train_loss: float  # for DPO, the DPO loss
    train_mean_token_accuracy: float | None = None  # supervised only
    learning_rate: float | None = None  # the rate this step applied
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    classification_accuracy: float | None = None
    classification_weighted_f1: float | None = None
    # DPO: the implicit rewards beta * (log pi - log ref) of the preferred and
    # rejected answers, their mean margin, and the fraction of pairs where the
    # preferred answer is rewarded more (train: this step's pairs; full_valid: every
    # validation pair, at each epoch end).
    train_chosen_reward: float | None = None
    train_rejected_reward: float | None = None
    train_reward_margin: float | None = None
    train_reward_accuracy: float | None = None
    full_valid_reward_margin: float | None = None
    full_valid_reward_accuracy: float | None = None

    def data(self) -> dict[str, float | int]:
        """The fields that were measured at this step (absent ones left out)."""
        return self.model_dump(exclude_none=True)


class _Event(_Record):
    time: float = Field(default_factory=time.time)


class MessageEvent(_Event):
    type: Literal["message"] = "message"
    message: str
    level: Level = "info"


class MetricsEvent(_Event):
    type: Literal["metrics"] = "metrics"
    metrics: StepMetrics
    trained_tokens: int
    elapsed_s: float  # since this run of the process started training
    steps_this_run: int


class CheckpointEvent(_Event):
    type: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str
    metrics: StepMetrics | None = None  # None only when the epoch ran no step in this run

    @property
    def is_final(self) -> bool:
        return self.metrics is not None and self.metrics.step == self.metrics.total_steps


class CheckpointRemovedEvent(_Event):
    type: Literal["checkpoint_removed"] = "checkpoint_removed"
    step: int
    path: str


class PausedEvent(_Event):
    type: Literal["paused"] = "paused"
    step: int
    path: str


class DoneEvent(_Event):
    type: Literal["done"] = "done"
    step: int
    path: str
    trained_tokens: int


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    message: str


Event = Annotated[
    MessageEvent
    | MetricsEvent
    | CheckpointEvent
    | CheckpointRemovedEvent
    | PausedEvent
    | DoneEvent
    | ErrorEvent,
    Field(discriminator="type"),
]
# How a process ends: the last of these in its events file says why it exited.
Outcome = PausedEvent | DoneEvent | ErrorEvent

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def encode(event: Event) -> str:
    """One JSON line (without the newline)."""
    return event.model_dump_json()


def decode(line: str | bytes) -> Event:
    """The event of one JSON line; ValueError when it is not a known, well-formed event."""
    return _EVENT.validate_json(line)


class EventWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def emit(self, event: Event) -> None:
        self._fh.write(encode(event) + "\n")
        self._fh.flush()

    def message(self, message: str, level: Level = "info") -> None:
        self.emit(MessageEvent(message=message, level=level))

    def close(self) -> None:
        self._fh.close()


def read_events(path: Path, offset: int) -> tuple[list[Event], int]:
    """Complete lines appended since `offset`, and the new offset (a partial last line waits).

    Lines that do not decode are logged and skipped.
    """
    if not path.exists():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1
    events: list[Event] = []
    for line in chunk[:end].splitlines():
        if not line.strip():
            continue
        try:
            events.append(decode(line))
        except (ValidationError, ValueError) as e:
            log.warning("skipping an unreadable line of %s: %.200r (%s)", path, line, _reason(e))
    return events, offset + end


def _reason(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'line'}: {first['msg']}"
    return str(e)


class Control:
    """Why the loop should stop now, if it should: "cancel", "pause" or None."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / CONTROL_FILE
        self._signalled = False
        self._parent = os.getppid()
        # Under torchrun the parent is torchrun's agent, which outlives a dead worker:
        # the worker names itself here instead (tunelab.jobs.worker).
        self._supervisor = int(os.environ.get(SUPERVISOR_ENV, "0"))

    def install_signal_handler(self) -> None:
        def _on_term(signum: int, frame: FrameType | None) -> None:
            self._signalled = True

        signal.signal(signal.SIGTERM, _on_term)

    def request(self) -> str | None:
        if self._signalled or os.getppid() != self._parent:
            return "cancel"
        if self._supervisor and not _alive(self._supervisor):
            return "cancel"
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        return text if text in ("cancel", "pause") else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_control(job_dir: Path, request: str) -> None:
    tmp = job_dir / (CONTROL_FILE + ".tmp")
    tmp.write_text(request)
    os.replace(tmp, job_dir / CONTROL_FILE)
