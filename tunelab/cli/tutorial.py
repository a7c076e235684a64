"""`tunelab quickstart`, `tunelab classify` and `tunelab ground-data`: the tutorial's
commands (the steps themselves live in tunelab.tutorial)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

from tunelab.cli.client import api_errors, make_client
from tunelab.settings import Settings


@click.command()
@click.option(
    "--base-url",
    default=None,
    help="Server to use (default TUNELAB_BASE_URL; if none answers, "
    "one is started on a fresh data dir).",
)
@click.option(
    "--fast", is_flag=True, help="Only the steps that neither train nor generate (about a minute)."
)
@click.option(
    "--step",
    "steps",
    multiple=True,
    metavar="NAME",
    help="Run only these steps (repeatable): prepare, upload, finetune, compare, embeddings, "
    "store, ask, grounded, classify, prefer.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where prepared files (and a started server's data) go (default: a new temporary dir).",
)
def quickstart(
    base_url: str | None, fast: bool, steps: tuple[str, ...], workdir: Path | None
) -> None:
    """Walk the whole tutorial on the sample data in examples/, printing each step's
    command, its openai SDK equivalent and its result.

    \b
    Steps: prepare messy data, upload, fine-tune a persona (live progress), compare
    base and fine-tuned, embeddings, a vector store of a product manual with cited
    answers, context-grounded fine-tuning scored on held-out questions, and
    classification by fine-tuning vs embeddings + logistic regression.

    \b
    Example:
      tunelab serve &            # or let quickstart start its own server
      tunelab quickstart
      tunelab quickstart --step grounded
    """
    from tunelab.tutorial.quickstart import FAST_STEPS, STEPS, run, server_for, summary
    from tunelab.tutorial.session import Session, StepUnavailable

    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise click.BadParameter(
            f"unknown step {unknown[0]!r}; choose from {', '.join(STEPS)}", param_hint="--step"
        )
    chosen = list(steps) or [s for s in STEPS if not fast or s in FAST_STEPS]
    settings = Settings.from_env(base_url=base_url)
    started = time.monotonic()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="tunelab-quickstart-"))
    try:
        with server_for(settings, explicit=base_url is not None, data_dir=workdir / "data") as (
            url,
            kept,
        ):
            session = Session(
                client=make_client(settings.model_copy(update={"base_url": url})),
                workdir=workdir / "work",
                fast=fast,
            )
            session.workdir.mkdir(parents=True, exist_ok=True)
            session.console.print(f"tunelab quickstart against {url}: steps {', '.join(chosen)}")
            failures = run(session, chosen)
            summary(session, time.monotonic() - started, kept)
    except StepUnavailable as e:
        raise click.ClickException(str(e)) from None
    if failures:
        click.echo("\nSteps that did not complete:\n  " + "\n  ".join(failures), err=True)
        sys.exit(1)


@click.command()
@click.option(
    "--train",
    "train_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labelled examples: prompt = text, completion = class (JSONL, CSV, TSV, XLSX, JSON).",
)
@click.option(
    "--test",
    "test_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Examples to score on (default: a stratified 20% of --train).",
)
@click.option(
    "-m",
    "--model",
    default=None,
    help="Embedding model (default: the server's default embedding model).",
)
@api_errors
def classify(train_path: Path, test_path: Path | None, model: str | None) -> None:
    """Train an embeddings + logistic-regression classifier and print its accuracy
    and weighted F1: the cheap alternative to fine-tuning a classifier.

    \b
    Example:
      tunelab prepare-data -f examples/tickets.csv -q
      tunelab classify --train examples/tickets_prepared_train.jsonl --test examples/tickets_prepared_valid.jsonl
    """
    from tunelab.tutorial.classify import embedding_classifier, read_labelled, split
    from tunelab.tutorial.session import StepUnavailable

    settings = Settings()
    try:
        train = read_labelled(train_path)
        test = read_labelled(test_path) if test_path else None
        if test is None:
            train, test = split(train)
        result, _ = embedding_classifier(
            make_client(settings), model or settings.default_embedding_model, train, test
        )
    except (ValueError, StepUnavailable) as e:
        raise click.ClickException(str(e)) from None
    classes = sorted(set(train.labels))
    click.echo(
        f"{len(train.texts)} training examples, {len(classes)} classes: {', '.join(classes)}"
    )
    click.echo(f"accuracy     {result.accuracy:.3f}")
    click.echo(f"weighted F1  {result.f1:.3f}")
    click.echo(f"(on {result.n} test examples)")


@click.command("ground-data")
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSONL of {"question", "answer"} pairs (optional "must_contain": the key fact).',
)
@click.option(
    "--store", "store_id", required=True, help="Vector store to retrieve the context from."
)
@click.option(
    "-k",
    "k",
    default=2,
    show_default=True,
    type=click.IntRange(1, 50),
    help="Passages per question; use the same max_num_results when asking the model.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the chat examples (default: <file>_grounded.jsonl).",
)
@api_errors
def ground_data(path: Path, store_id: str, k: int, output: Path | None) -> None:
    """Turn question/answer pairs into chat training examples whose prompt carries the
    passages retrieved from a vector store, laid out exactly as the grounded-answer path
    (/v1/responses with file_search) lays them out. A model fine-tuned on them learns
    to answer from inserted context.

    \b
    Example:
      tunelab ground-data -f examples/manual_qa_train.jsonl --store vs_abc123 -o grounded.jsonl
      tunelab jobs create -t grounded.jsonl -m smollm2-135m-instruct --suffix manual
    """
    from tunelab.tutorial.grounded import build_grounded_data, load_pairs
    from tunelab.tutorial.session import StepUnavailable, write_jsonl

    output = output or path.with_name(path.stem + "_grounded.jsonl")
    if output.resolve() == path.resolve():
        raise click.BadParameter(
            "the output would overwrite the input; choose another -o", param_hint="-o"
        )
    try:
        examples, missed = build_grounded_data(make_client(), store_id, load_pairs(path), k)
    except (ValueError, StepUnavailable) as e:
        raise click.ClickException(str(e)) from None
    if not examples:
        raise click.ClickException(
            "No example written: the store returned none of the key facts "
            "(`must_contain`). Check that the store holds the right documents, or raise -k."
        )
    write_jsonl(output, examples)
    click.echo(f"wrote {len(examples)} grounded examples to {output}")
    for pair in missed:
        click.echo(
            f"left out (no retrieved passage contains {pair.must_contain!r}): {pair.question}",
            err=True,
        )


commands: list[click.Command] = [quickstart, classify, ground_data]
