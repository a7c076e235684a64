"""The typed records that cross the process boundary between training and worker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tunelab.training.events import (
    CheckpointEvent,
    CheckpointRemovedEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    EventWriter,
    MessageEvent,
    MetricsEvent,
    PausedEvent,
    StepMetrics,
    decode,
    encode,
    read_events,
)

pytestmark = pytest.mark.unit

STEP = StepMetrics(step=3, total_steps=9, train_loss=1.25, train_mean_token_accuracy=0.5)
EVERY_KIND: list[Event] = [
    MessageEvent(message="hello", level="warn"),
    MetricsEvent(metrics=STEP, trained_tokens=120, elapsed_s=1.5, steps_this_run=3),
    CheckpointEvent(step=3, path="/m/step-3", metrics=STEP),
    CheckpointRemovedEvent(step=3, path="/m/step-3"),
    PausedEvent(step=4, path="/m/step-4"),
    DoneEvent(step=9, path="/m/step-9", trained_tokens=360),
    ErrorEvent(message="RuntimeError: boom"),
]


@pytest.mark.parametrize("event", EVERY_KIND, ids=lambda e: e.type)
def test_every_kind_round_trips(event: Event) -> None:
    line = encode(event)
    assert "\n" not in line and json.loads(line)["type"] == event.type
    assert decode(line) == event


def test_metrics_data_has_only_what_was_measured() -> None:
    assert STEP.data() == {
        "step": 3,
        "total_steps": 9,
        "train_loss": 1.25,
        "train_mean_token_accuracy": 0.5,
    }
    final = StepMetrics(
        step=9, total_steps=9, train_loss=1.0, train_mean_token_accuracy=0.5, full_valid_loss=2.0
    )
    assert final.data()["full_valid_loss"] == 2.0
    assert CheckpointEvent(step=9, path="p", metrics=final).is_final
    assert not CheckpointEvent(step=3, path="p", metrics=STEP).is_final


@pytest.mark.parametrize(
    "line",
    [
        b"{not json",
        b'{"type": "teleported", "time": 1.0}',  # a kind this version does not know
        b'{"type": "metrics", "time": 1.0, "metrics": {"step": "three"}}',  # wrong types
        b'{"type": "done", "time": 1.0}',  # missing fields
        b"[1, 2, 3]",
        b"\xff\xfe garbage",
    ],
)
def test_garbled_lines_are_skipped_and_reading_goes_on(
    tmp_path: Path, line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.message("before")
    writer.close()
    with open(path, "ab") as fh:
        fh.write(line + b"\n")
    writer = EventWriter(path)
    writer.emit(DoneEvent(step=1, path="p", trained_tokens=5))
    writer.close()
    with caplog.at_level(logging.WARNING, logger="tunelab.training.events"):
        events, offset = read_events(path, 0)
    assert [e.type for e in events] == ["message", "done"]
    assert offset == path.stat().st_size
    assert "unreadable line" in caplog.text


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    line = encode(ErrorEvent(message="late"))
    path.write_text(line[:10])
    assert read_events(path, 0) == ([], 0)
    path.write_text(line + "\n")
    events, offset = read_events(path, 0)
    assert events == [ErrorEvent.model_validate_json(line)] and offset == len(line) + 1
    assert read_events(path, offset) == ([], offset)
    assert read_events(tmp_path / "missing.jsonl", 0) == ([], 0)
