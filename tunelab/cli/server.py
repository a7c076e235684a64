"""`tunelab serve` and `tunelab keys`: commands that run on the server machine."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tunelab.settings import Settings

if TYPE_CHECKING:
    from tunelab.keys import KeyStore


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _settings(**overrides: object) -> Settings:
    """Settings, or a clean error naming the bad TUNELAB_* variable (no traceback)."""
    from pydantic import ValidationError

    try:
        return Settings.from_env(**overrides)
    except ValidationError as e:
        why = "; ".join(
            f"TUNELAB_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else err["msg"]  # a check of the whole (unknown variables): it names them
            for err in e.errors(include_input=False)
        )
        raise click.ClickException(f"Invalid settings: {why}") from None


@click.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where data lives (default ~/.tunelab).",
)
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Start the OpenAI-compatible server (and an embedded fine-tuning worker).

    \b
    Example:
      tunelab serve --port 8000
      curl -s http://127.0.0.1:8000/v1/models
    """
    import uvicorn

    settings = _settings(host=host, port=port, data_dir=data_dir)
    from tunelab.api.app import create_app
    from tunelab.models.registry import RegistryError
    from tunelab.runtime import build_runtime

    try:
        runtime = build_runtime(settings)
    except RegistryError as e:
        raise click.ClickException(str(e)) from None
    if not _is_loopback(settings.host) and not runtime.keys.any_configured():
        raise click.ClickException(
            f"Refusing to listen on {settings.host} without API keys: anyone could use it. "
            "Set TUNELAB_API_KEYS=KEY:PROJECT (or run `tunelab keys create`), "
            "or use --host 127.0.0.1."
        )
    click.echo(
        f"tunelab serving on http://{settings.host}:{settings.port}/v1 "
        f"(data in {settings.data_dir})",
        err=True,
    )
    uvicorn.run(create_app(runtime), host=settings.host, port=settings.port, log_level="info")


@click.group()
def keys() -> None:
    """Create and list API keys (stored hashed in the database)."""


def _keys() -> KeyStore:
    from tunelab.runtime import build_runtime

    return build_runtime(_settings(), embedded_worker=False).keys


@keys.command("create")
@click.option("--project", default="default", show_default=True, help="Project the key belongs to.")
@click.option("--name", default=None, help="A label to recognise the key by.")
def keys_create(project: str, name: str | None) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    key = _keys().create(project, name)
    click.echo(key)
    click.echo(f"(project {project}; store it now, it cannot be shown again)", err=True)


@keys.command("list")
def keys_list() -> None:
    """List stored keys (prefix, project, name) — never the keys themselves."""
    from tunelab.cli.client import print_table

    print_table(
        ["id", "prefix", "project", "name", "created_at"],
        [(k.id, k.prefix + "…", k.project, k.name, k.created_at) for k in _keys().list()],
    )


commands = [serve, keys]
