"""`tunelab files ...`: thin commands over the openai SDK."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tunelab.cli.client import api_errors, json_option, make_client, print_json, print_table, when


@click.group()
def files() -> None:
    """Upload, list, show, download and delete files."""


@files.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--purpose",
    default="fine-tune",
    show_default=True,
    type=click.Choice(["fine-tune", "assistants", "batch", "user_data", "evals", "vision"]),
)
@json_option
@api_errors
def files_upload(path: Path, purpose: str, as_json: bool) -> None:
    """Upload a file.

    \b
    Example:  tunelab files upload train.jsonl --purpose fine-tune
    """
    with open(path, "rb") as fh:
        f = make_client().files.create(file=(path.name, fh), purpose=purpose)
    if as_json:
        print_json(f)
        return
    click.echo(f"{f.id}  {f.filename}  {f.bytes} bytes  {f.status}")
    if f.status == "error":
        click.echo(f"problems: {f.status_details}", err=True)
        sys.exit(1)


@files.command("list")
@click.option("--purpose", default=None)
@json_option
@api_errors
def files_list(purpose: str | None, as_json: bool) -> None:
    """List your project's files, newest first."""
    items = list(make_client().files.list(**({"purpose": purpose} if purpose else {})))
    if as_json:
        print_json([f.model_dump() for f in items])
        return
    print_table(
        ["id", "filename", "purpose", "bytes", "status", "created"],
        [(f.id, f.filename, f.purpose, f.bytes, f.status, when(f.created_at)) for f in items],
    )


@files.command("show")
@click.argument("file_id")
@api_errors
def files_show(file_id: str) -> None:
    """Show one file object as JSON."""
    print_json(make_client().files.retrieve(file_id))


@files.command("download")
@click.argument("file_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of standard output.",
)
@api_errors
def files_download(file_id: str, output: Path | None) -> None:
    """Download a file's bytes."""
    data = make_client().files.content(file_id).content
    if output:
        output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)


@files.command("rm")
@click.argument("file_ids", nargs=-1, required=True)
@api_errors
def files_rm(file_ids: tuple[str, ...]) -> None:
    """Delete files."""
    client = make_client()
    for fid in file_ids:
        client.files.delete(fid)
        click.echo(f"deleted {fid}")


commands = [files]
