"""`tunelab serve` and `tunelab keys`: commands that run on the server machine."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from tunelab.settings import Settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
      python -c "from openai import OpenAI; print(OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='x').models.list())"
    """
    import uvicorn

    overrides = {
        k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v is not None
    }
    settings = Settings(**overrides)
    from tunelab.api.app import create_app
    from tunelab.api.deps import keys_configured

    app = create_app(settings)
    if not _is_loopback(settings.host) and not keys_configured(app.state.services):
        raise click.ClickException(
            f"Refusing to listen on {settings.host} without API keys: anyone could use it. "
            "Set TUNELAB_API_KEYS=KEY:PROJECT (or run `tunelab keys create`), or use --host 127.0.0.1."
        )
    click.echo(
        f"tunelab serving on http://{settings.host}:{settings.port}/v1 (data in {settings.data_dir})",
        err=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


@click.group()
def keys() -> None:
    """Create and list API keys (stored hashed in the database)."""


def _db(settings: Settings):  # type: ignore[no-untyped-def]
    from tunelab.db.base import make_engine, make_sessionmaker, migrate

    migrate(settings.db_url)
    return make_sessionmaker(make_engine(settings.db_url))


@keys.command("create")
@click.option("--project", default="default", show_default=True, help="Project the key belongs to.")
@click.option("--name", default=None, help="A label to recognise the key by.")
def keys_create(project: str, name: str | None) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    import secrets

    from tunelab.api.deps import hash_key
    from tunelab.db.base import now
    from tunelab.db.tables import ApiKeyRow
    from tunelab.ids import new_id

    key = "tl-" + secrets.token_urlsafe(32)
    with _db(Settings()).begin() as s:
        s.add(
            ApiKeyRow(
                id=new_id("key_", 16),
                key_hash=hash_key(key),
                prefix=key[:7],
                project=project,
                name=name,
                created_at=now(),
            )
        )
    click.echo(key)
    click.echo(f"(project {project}; store it now, it cannot be shown again)", err=True)


@keys.command("list")
def keys_list() -> None:
    """List stored keys (prefix, project, name) — never the keys themselves."""
    from sqlalchemy import select

    from tunelab.cli.client import print_table
    from tunelab.db.tables import ApiKeyRow

    with _db(Settings())() as s:
        rows = list(s.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).scalars())
    print_table(
        ["id", "prefix", "project", "name", "created_at"],
        [(r.id, r.prefix + "…", r.project, r.name, r.created_at) for r in rows],
    )


commands = [serve, keys]
