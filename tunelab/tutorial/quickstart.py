"""`tunelab quickstart`: the whole tutorial, step by step, against a tunelab server —
the one at TUNELAB_BASE_URL, or one started here on a fresh data dir when none answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.table import Table

from tunelab.settings import Settings
from tunelab.tutorial.classify import step_classify
from tunelab.tutorial.data import step_prepare, step_upload
from tunelab.tutorial.finetune import step_compare, step_finetune
from tunelab.tutorial.grounded import step_grounded
from tunelab.tutorial.prefer import step_prefer
from tunelab.tutorial.retrieval import step_ask, step_embeddings, step_vector_store
from tunelab.tutorial.session import Session, StepUnavailable

STEPS: dict[str, Callable[[Session], None]] = {
    "prepare": step_prepare,
    "upload": step_upload,
    "finetune": step_finetune,
    "compare": step_compare,
    "embeddings": step_embeddings,
    "store": step_vector_store,
    "ask": step_ask,
    "grounded": step_grounded,
    "classify": step_classify,
    "prefer": step_prefer,
}
# The steps that neither train nor generate text: seconds, not minutes.
FAST_STEPS = ("prepare", "upload", "embeddings", "store", "classify")
START_TIMEOUT_S = 180


def server_root(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1")


def answers(base_url: str) -> bool:
    import httpx

    try:
        return httpx.get(server_root(base_url) + "/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def own_server(settings: Settings, data_dir: Path) -> Iterator[str]:
    """`tunelab serve` in a subprocess on a free port and `data_dir`; yields its /v1 URL.

    Converted models are shared with the user's usual cache, so the walk does not
    convert them again; everything else (database, files, models) lives in data_dir.
    """
    import tunelab

    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(tunelab.__file__).resolve().parent.parent), env.get("PYTHONPATH")])
    )
    env["TUNELAB_CACHE_DIR"] = str(settings.model_cache_dir)
    env.pop("TUNELAB_DATABASE_URL", None)
    url = f"http://127.0.0.1:{port}/v1"
    with open(data_dir / "server.log", "wb") as log:
        # Its own process group, so that stopping it also stops the training processes
        # its worker spawned, even when the walk is interrupted.
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tunelab",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise StepUnavailable(
                    f"the tunelab server did not start; its log ends with:\n{tail}"
                )
            time.sleep(0.3)
        yield url
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, give it 30 s, then SIGKILL whatever is left
    (a training process outlives a server that stops without cancelling it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def server_for(
    settings: Settings, *, explicit: bool, data_dir: Path
) -> Iterator[tuple[str, Path | None]]:
    """(the /v1 URL to use, the data dir of a server started here or None).

    The server at settings.base_url when it answers; otherwise, unless that URL was
    asked for explicitly, a server started on data_dir for the length of the walk.
    """
    if answers(settings.base_url):
        yield settings.base_url, None
        return
    if explicit:
        raise StepUnavailable(
            f"No tunelab server answers at {settings.base_url}. Start one with `tunelab serve`, "
            "or leave out --base-url to let quickstart start one."
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"No server at {settings.base_url}; starting one on {data_dir} …", file=sys.stderr)
    with own_server(settings, data_dir) as url:
        yield url, data_dir


def run(session: Session, steps: list[str]) -> list[str]:
    """Walk the steps in order; the failures, each as one line (no tracebacks)."""
    import openai

    failures = []
    for name in steps:
        try:
            STEPS[name](session)
        except (StepUnavailable, ValueError) as e:  # ValueError: a sample file that does not read
            failures.append(f"{name}: {e}")
        except openai.APIStatusError as e:
            failures.append(f"{name}: the server answered {e.status_code}: {e.message}")
        except openai.APIConnectionError as e:
            failures.append(f"{name}: lost the connection to the server ({e})")
        if failures and failures[-1].startswith(f"{name}:"):
            session.console.print(
                f"[red]step {name} did not complete:[/red] {failures[-1].split(': ', 1)[1]}"
            )
    return failures


def summary(session: Session, elapsed_s: float, kept: Path | None) -> None:
    console = session.console
    console.rule("[bold]What the walk created")
    table = Table()
    table.add_column("kind")
    table.add_column("ids")
    table.add_column("explore with")
    hints = {
        "files": "tunelab files list",
        "jobs": "tunelab jobs list",
        "models": "tunelab models list",
        "vector_stores": "tunelab stores list",
    }
    for kind, ids in session.created.items():
        table.add_row(kind, "\n".join(ids) or "-", hints[kind])
    console.print(table)
    if session.results:
        measured = Table(title="What the walk measured")
        measured.add_column("")
        measured.add_column("")
        for key, value in session.results.items():
            shown = (
                ", ".join(f"{k}: {v}" for k, v in value.items())
                if isinstance(value, dict)
                else str(value)
            )
            measured.add_row(key, shown)
        console.print(measured)
    console.print(f"prepared and generated files: {session.workdir}")
    if kept:
        console.print(
            f"the server started for this walk has stopped; its data is in {kept}.\n"
            f"Explore it with:  tunelab serve --data-dir {kept}"
        )
    console.print(f"quickstart finished in {elapsed_s / 60:.1f} min")
