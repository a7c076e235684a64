"""`tunelab batches ...`: the Batch API from the command line, over the openai SDK."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from tunelab.cli.client import api_errors, json_option, make_client, print_json, print_table, when

ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
TERMINAL = ("completed", "failed", "expired", "cancelled")


@click.group()
def batches() -> None:
    """Run many requests from one JSONL file in the background."""


def _counts(b: Any) -> str:  # an openai Batch
    c = b.request_counts
    return f"{c.completed}/{c.total} done, {c.failed} failed" if c else ""


@batches.command("create")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--endpoint", type=click.Choice(ENDPOINTS), required=True)
@click.option("--wait", is_flag=True, help="Wait until the batch finishes, showing its counts.")
@json_option
@api_errors
def batches_create(path: Path, endpoint: str, wait: bool, as_json: bool) -> None:
    """Upload a JSONL file of requests and start a batch on it.

    \b
    Each line: {"custom_id": "r1", "method": "POST", "url": "/v1/embeddings",
                "body": {"model": "text-embedding-3-small", "input": "hello"}}
    Example:  tunelab batches create requests.jsonl --endpoint /v1/embeddings --wait
    """
    client = make_client()
    with open(path, "rb") as fh:
        f = client.files.create(file=(path.name, fh), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")
    if not as_json:
        click.echo(f"{b.id}  {b.status}  (input {f.id})")
    while wait and b.status not in TERMINAL:
        time.sleep(1)
        b = client.batches.retrieve(b.id)
        if not as_json:
            click.echo(f"{b.status}: {_counts(b)}", err=True)
    if as_json:
        print_json(b)
    elif wait:
        click.echo(f"output: {b.output_file_id}  errors: {b.error_file_id}")
    if b.status == "failed":
        for e in b.errors.data if b.errors else []:
            click.echo(f"line {e.line}: {e.code}: {e.message}", err=True)
        sys.exit(1)


@batches.command("list")
@click.option("--limit", default=20, show_default=True)
@json_option
@api_errors
def batches_list(limit: int, as_json: bool) -> None:
    """List your project's batches, newest first."""
    items = list(make_client().batches.list(limit=limit))[:limit]
    if as_json:
        print_json([b.model_dump() for b in items])
        return
    print_table(
        ["id", "endpoint", "status", "requests", "output", "created"],
        [
            (b.id, b.endpoint, b.status, _counts(b), b.output_file_id, when(b.created_at))
            for b in items
        ],
    )


@batches.command("show")
@click.argument("batch_id")
@api_errors
def batches_show(batch_id: str) -> None:
    """Show one batch as JSON (status, counts, output and error files)."""
    print_json(make_client().batches.retrieve(batch_id))


@batches.command("cancel")
@click.argument("batch_id")
@api_errors
def batches_cancel(batch_id: str) -> None:
    """Cancel a batch: lines already run stay in its output file."""
    b = make_client().batches.cancel(batch_id)
    click.echo(f"{b.id}  {b.status}")


commands = [batches]
