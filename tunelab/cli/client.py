"""How CLI commands reach the server, and how they print results."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from tunelab.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def make_client(settings: Settings | None = None) -> Any:
    """An openai.OpenAI pointed at tunelab (TUNELAB_BASE_URL, TUNELAB_API_KEY)."""
    import openai

    settings = settings or Settings()
    return openai.OpenAI(
        base_url=settings.base_url, api_key=settings.api_key or "tunelab", max_retries=1
    )


def api_errors(fn: F) -> F:
    """Turn SDK errors into one clean line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.APIConnectionError as e:
            raise click.ClickException(
                f"Cannot reach the tunelab server at {Settings().base_url} ({e}). "
                "Start it with `tunelab serve` (or `make serve`), or set TUNELAB_BASE_URL."
            ) from e
        except openai.APIStatusError as e:
            message = e.message
            body = e.body if isinstance(e.body, dict) else {}
            message = body.get("message", message) if isinstance(body, dict) else message
            raise click.ClickException(f"{e.status_code}: {message}") from e

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    if hasattr(data, "model_dump"):
        data = data.model_dump()
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    Console().print(table)


def when(ts: int | None) -> str:
    """A unix timestamp as a short UTC date-time for tables."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
