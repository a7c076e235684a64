"""What every tutorial step shares: the SDK client, the console, the sample data and
a record of what the walk created (so the user can explore it afterwards)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax


class StepUnavailable(Exception):
    """A step needs a capability this server (or this install) does not have yet."""


def examples_dir() -> Path:
    """The repository's `examples/` folder (sample data shipped with tunelab)."""
    import tunelab

    return Path(tunelab.__file__).resolve().parent.parent / "examples"


@dataclass
class Session:
    client: Any  # openai.OpenAI
    workdir: Path  # where prepared and generated files are written
    console: Console = field(default_factory=Console)
    examples: Path = field(default_factory=examples_dir)
    fast: bool = False  # smaller data and fewer epochs: for tests and impatient users
    chat_model: str = "smollm2-135m-instruct"
    embedding_model: str = "all-minilm-l6-v2"
    created: dict[str, list[str]] = field(
        default_factory=lambda: {"files": [], "jobs": [], "models": [], "vector_stores": []}
    )
    state: dict[str, Any] = field(default_factory=dict)  # results steps hand to later steps
    results: dict[str, Any] = field(default_factory=dict)  # the numbers the walk measured

    def example(self, name: str) -> Path:
        return self.examples / name

    def title(self, number: int, text: str) -> None:
        self.console.rule(f"[bold]Step {number}: {text}")

    def show(self, command: str | None = None, sdk: str | None = None) -> None:
        """Print the CLI command and the equivalent openai SDK code for a step."""
        if command:
            self.console.print(
                Panel(
                    Syntax(command, "bash", word_wrap=True), title="tunelab CLI", title_align="left"
                )
            )
        if sdk:
            self.console.print(
                Panel(
                    Syntax(sdk.strip(), "python", word_wrap=True),
                    title="openai SDK",
                    title_align="left",
                )
            )

    def track(self, kind: str, resource_id: str) -> str:
        if resource_id not in self.created[kind]:
            self.created[kind].append(resource_id)
        return resource_id

    def upload(self, path: Path, purpose: str = "fine-tune") -> Any:
        with open(path, "rb") as fh:
            f = self.client.files.create(file=(path.name, fh), purpose=purpose)
        self.track("files", f.id)
        return f


@contextlib.contextmanager
def needs(feature: str) -> Iterator[None]:
    """Turn 'this server has no such endpoint' / 'this install has no such module' into
    StepUnavailable, so a walk against an older server says what is missing instead of
    printing a traceback."""
    import openai

    try:
        yield
    except openai.NotFoundError as e:
        if "Unknown endpoint" not in str(e):
            raise
        raise StepUnavailable(
            f"the server does not serve {feature} yet (upgrade tunelab and restart `tunelab serve`)"
        ) from e
    except ImportError as e:
        raise StepUnavailable(f"this tunelab install has no {feature} ({e.name} is missing)") from e


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
