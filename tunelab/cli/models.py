"""`tunelab models ...` and `tunelab embed`: thin commands over the openai SDK."""

from __future__ import annotations

import click

from tunelab.cli.client import api_errors, json_option, make_client, print_json, print_table, when


@click.group()
def models() -> None:
    """List, show and delete models."""


@models.command("list")
@json_option
@api_errors
def models_list(as_json: bool) -> None:
    """List base models and your fine-tuned models."""
    items = list(make_client().models.list())
    if as_json:
        print_json([m.model_dump() for m in items])
        return
    print_table(["id", "owned_by", "created"], [(m.id, m.owned_by, when(m.created)) for m in items])


@models.command("show")
@click.argument("model")
@api_errors
def models_show(model: str) -> None:
    """Show one model as JSON."""
    print_json(make_client().models.retrieve(model))


@models.command("rm")
@click.argument("model")
@api_errors
def models_rm(model: str) -> None:
    """Delete one of your fine-tuned models."""
    make_client().models.delete(model)
    click.echo(f"deleted {model}")


@click.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("-m", "--model", default="all-minilm-l6-v2", show_default=True)
@click.option("--dimensions", type=int, default=None)
@json_option
@api_errors
def embed(texts: tuple[str, ...], model: str, dimensions: int | None, as_json: bool) -> None:
    """Embed texts; with several, print their cosine similarity matrix.

    \b
    Example:  tunelab embed "How do I reset the router?" "路由器怎么重置？" "Best pizza in town"
    """
    import numpy as np

    kwargs = {"dimensions": dimensions} if dimensions else {}
    resp = make_client().embeddings.create(model=model, input=list(texts), **kwargs)
    vecs = np.array([d.embedding for d in resp.data], dtype=np.float32)
    if as_json:
        print_json(resp)
        return
    click.echo(f"{len(texts)} vector(s) of {vecs.shape[1]} dims, {resp.usage.total_tokens} tokens")
    if len(texts) == 1:
        click.echo(" ".join(f"{x:.4f}" for x in vecs[0][:8]) + " …")
        return
    sims = vecs @ vecs.T
    labels = [t if len(t) <= 30 else t[:29] + "…" for t in texts]
    print_table(
        [""] + [str(i + 1) for i in range(len(texts))],
        [[f"{i + 1}. {labels[i]}"] + [f"{v:.3f}" for v in row] for i, row in enumerate(sims)],
        title="cosine similarity",
    )


commands = [models, embed]
