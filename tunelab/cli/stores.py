"""`tunelab stores ...` and `tunelab ask`: vector stores and grounded answers, via the SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tunelab.cli.client import api_errors, json_option, make_client, print_json, print_table, when


def _upload(
    client: Any, store_id: str, paths: tuple[Path, ...], chunk_tokens: int | None, overlap: int
) -> None:
    """Upload local files (purpose assistants), attach them, and wait for indexing."""
    chunking: dict[str, Any] = {}
    if chunk_tokens is not None:
        chunking["chunking_strategy"] = {
            "type": "static",
            "static": {"max_chunk_size_tokens": chunk_tokens, "chunk_overlap_tokens": overlap},
        }
    elif overlap:
        raise click.UsageError("--overlap-tokens needs --chunk-tokens.")
    for path in paths:
        with path.open("rb") as fh:
            f = client.vector_stores.files.upload_and_poll(
                vector_store_id=store_id, file=(path.name, fh), **chunking
            )
        if f.status == "completed":
            click.echo(f"{path.name}: indexed ({f.id})", err=True)
        else:
            reason = f.last_error.message if f.last_error else f.status
            click.echo(f"{path.name}: {f.status}: {reason}", err=True)


@click.group("stores")
def stores_group() -> None:
    """Vector stores: upload documents, search them, answer from them.

    \b
    tunelab stores create manual docs/manual.md docs/manual.pdf
    tunelab stores search vs_... "how do I reset it?"
    tunelab ask --store vs_... "how do I reset it?"
    """


def chunking_options(command: Any) -> Any:
    """--chunk-tokens / --overlap-tokens: the API's static chunking strategy."""
    command = click.option(
        "--overlap-tokens",
        default=0,
        show_default=True,
        help="Tokens each chunk repeats from the previous one (with --chunk-tokens).",
    )(command)
    return click.option(
        "--chunk-tokens",
        type=int,
        default=None,
        help="Tokens per chunk, 100-4096 (default: auto, one embedding-model window).",
    )(command)


@stores_group.command("create")
@click.argument("name")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@chunking_options
@api_errors
def create(
    name: str, files: tuple[Path, ...], chunk_tokens: int | None, overlap_tokens: int
) -> None:
    """Create a store called NAME and index FILES into it; prints the store id."""
    client = make_client()
    vs = client.vector_stores.create(name=name)
    _upload(client, vs.id, files, chunk_tokens, overlap_tokens)
    click.echo(vs.id)


@stores_group.command("add")
@click.argument("store_id")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@chunking_options
@api_errors
def add(
    store_id: str, files: tuple[Path, ...], chunk_tokens: int | None, overlap_tokens: int
) -> None:
    """Upload FILES and index them into STORE_ID (waits until done)."""
    _upload(make_client(), store_id, files, chunk_tokens, overlap_tokens)


@stores_group.command("list")
@json_option
@api_errors
def list_(as_json: bool) -> None:
    """List your vector stores."""
    stores = list(make_client().vector_stores.list())
    if as_json:
        print_json([s.model_dump() for s in stores])
        return
    rows = [
        (
            s.id,
            s.name,
            s.status,
            s.file_counts.completed,
            s.file_counts.failed,
            s.usage_bytes,
            when(s.created_at),
        )
        for s in stores
    ]
    print_table(["id", "name", "status", "files", "failed", "bytes", "created"], rows)


@stores_group.command("files")
@click.argument("store_id")
@json_option
@api_errors
def files_(store_id: str, as_json: bool) -> None:
    """List the files of STORE_ID with their status and why a file failed."""
    client = make_client()
    files = list(client.vector_stores.files.list(vector_store_id=store_id))
    if as_json:
        print_json([f.model_dump() for f in files])
        return
    names = {}
    for f in files:
        try:
            names[f.id] = client.files.retrieve(f.id).filename
        except Exception:  # the File may be gone while its row is being removed
            names[f.id] = ""
    rows = [
        (f.id, names[f.id], f.status, f.usage_bytes, f.last_error.message if f.last_error else "")
        for f in files
    ]
    print_table(["id", "filename", "status", "bytes", "error"], rows)


@stores_group.command("search")
@click.argument("store_id")
@click.argument("query")
@click.option("-n", "--max-results", default=5, show_default=True, help="How many chunks to show.")
@click.option(
    "--ranker",
    type=click.Choice(["auto", "dense", "keyword"]),
    default="auto",
    show_default=True,
    help="Hybrid (auto), dense vectors only, or keywords only.",
)
@json_option
@api_errors
def search(store_id: str, query: str, max_results: int, ranker: str, as_json: bool) -> None:
    """Search STORE_ID for QUERY and print the best chunks."""
    page = make_client().vector_stores.search(
        store_id, query=query, max_num_results=max_results, ranking_options={"ranker": ranker}
    )
    if as_json:
        print_json([r.model_dump() for r in page.data])
        return
    for r in page.data:
        text = " ".join(r.content[0].text.split()) if r.content else ""
        click.echo(f"{r.score:.3f}  {r.filename}  {r.file_id}\n    {text[:300]}\n")


@stores_group.command("rm")
@click.argument("store_ids", nargs=-1, required=True)
@api_errors
def rm(store_ids: tuple[str, ...]) -> None:
    """Delete vector stores (the uploaded Files themselves are kept)."""
    client = make_client()
    for store_id in store_ids:
        client.vector_stores.delete(store_id)
        click.echo(f"deleted {store_id}")


@click.command("ask")
@click.argument("question")
@click.option(
    "--store", "stores", multiple=True, required=True, help="Vector store id (repeatable)."
)
@click.option(
    "-m",
    "--model",
    default=None,
    help="Chat model (default: TUNELAB_DEFAULT_CHAT_MODEL, smollm2-135m-instruct).",
)
@click.option(
    "-n", "--max-results", default=4, show_default=True, help="Passages given to the model."
)
@click.option("--max-tokens", default=256, show_default=True, help="Longest answer, in tokens.")
@api_errors
def ask(
    question: str, stores: tuple[str, ...], model: str | None, max_results: int, max_tokens: int
) -> None:
    """Answer QUESTION from your documents, then list the passages cited."""
    from tunelab.settings import Settings

    resp = make_client().responses.create(
        model=model or Settings().default_chat_model,
        input=question,
        tools=[
            {
                "type": "file_search",
                "vector_store_ids": list(stores),
                "max_num_results": max_results,
            }
        ],
        include=["file_search_call.results"],
        max_output_tokens=max_tokens,
        temperature=0,
    )
    click.echo(resp.output_text.strip())
    results = [
        r for item in resp.output if item.type == "file_search_call" for r in item.results or []
    ]
    cited = {
        a.file_id
        for item in resp.output
        if item.type == "message"
        for part in item.content
        for a in part.annotations
    }
    shown = [(n, r) for n, r in enumerate(results, start=1) if r.file_id in cited]
    if shown:
        click.echo("\nSources:")
    for n, r in shown:
        click.echo(f"[{n}] {r.filename} (score {r.score:.2f}): {' '.join(r.text.split())[:200]}")


commands = [stores_group, ask]
