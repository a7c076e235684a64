"""The training process: `python -m tunelab.training JOB_DIR`.

Reads JOB_DIR/config.json (a TrainConfig), trains, and reports through
JOB_DIR/events.jsonl (see tunelab.training.events). Exit status: 0 when training
finished, was cancelled or paused (the events say which), 1 on failure (an `error`
event carries the reason). Started by torchrun, every process runs this; rank 0
alone reports, the others only their failures (tunelab.training.distributed).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from tunelab.training.events import CONFIG_FILE, EVENTS_FILE, Control, ErrorEvent, EventWriter


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tunelab.training JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    control = Control(job_dir)
    control.install_signal_handler()
    rank = int(os.environ.get("RANK", "0"))
    events = EventWriter(job_dir / EVENTS_FILE if rank == 0 else Path(os.devnull))
    try:
        from tunelab.training.config import TrainConfig
        from tunelab.training.loop import train

        train(TrainConfig.load(job_dir / CONFIG_FILE), events, control)
        return 0
    except Exception as e:  # the worker needs the reason as an event, whatever it is
        traceback.print_exc()
        if rank == 0:
            events.emit(ErrorEvent(message=f"{type(e).__name__}: {e}"))
        else:
            failed = EventWriter(job_dir / EVENTS_FILE)
            failed.emit(ErrorEvent(message=f"training process {rank}: {type(e).__name__}: {e}"))
            failed.close()
        return 1
    finally:
        events.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
