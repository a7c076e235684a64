"""`tunelab prepare-data`: check and fix a training file locally (no server needed)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tunelab.models.registry import SMOLLM2

PROGRESS_MIN_ITEMS = 10_000


class ClickConsole:
    """prepare-data's terminal: [Y/n] questions, or every answer Yes with -q."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def echo(self, text: str = "") -> None:
        click.echo(text)

    def ask(self, question: str) -> bool:
        if self.quiet:
            click.echo(question + "Y")
            return True
        answer = click.prompt(question, default="", show_default=False, prompt_suffix="")
        return answer.strip().lower() != "n"

    def progress(self, total: int, label: str) -> Any:
        # Small files finish before a bar is worth drawing; click draws one only on a terminal.
        if total < PROGRESS_MIN_ITEMS or not sys.stderr.isatty():
            return _NoProgress()
        return click.progressbar(length=total, label=label, file=sys.stderr)


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _tokenizer_loader(model: str) -> Callable[[str], tuple[Any, int]]:
    """Resolve the model now (a typo fails before any work); load its tokenizer when needed."""
    from tunelab.errors import TunelabError
    from tunelab.models.loading import chat_tokenizer_loader
    from tunelab.models.registry import Registry
    from tunelab.settings import Settings

    settings = Settings()
    try:
        return chat_tokenizer_loader(
            Registry.for_settings(settings), settings.model_cache_dir, model
        )
    except TunelabError as e:
        raise click.BadParameter(e.message, param_hint="'-m' / '--model'") from None


@click.command("prepare-data")
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV, TSV, XLSX, TXT, JSON or JSONL file with training examples.",
)
@click.option("-q", "--quiet", is_flag=True, help="Accept every recommendation without asking.")
@click.option(
    "-m",
    "--model",
    default=SMOLLM2,
    show_default=True,
    help="Base model whose tokenizer counts tokens and shows the loss mask.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Where to write the prepared JSONL (default: <file>_prepared.jsonl).",
)
@click.option("--to-chat", is_flag=True, help="Convert prompt/completion pairs to chat messages.")
@click.option(
    "--show-masks",
    default=0,
    metavar="N",
    help="Print the first N examples marking the trained tokens as [[...]].",
)
@click.option(
    "--stats/--no-stats",
    default=True,
    show_default=True,
    help="Token statistics with the model's tokenizer (loads the tokenizer).",
)
def prepare_data(
    path: Path,
    quiet: bool,
    model: str,
    output: Path | None,
    to_chat: bool,
    show_masks: int,
    stats: bool,
) -> None:
    """Check a fine-tuning data file, fix what can be fixed, and write JSONL.

    \b
    Example:
      tunelab prepare-data -f questions.csv
      tunelab prepare-data -f chats.jsonl --show-masks 2
    """
    from tunelab.data.prepare import Options, prepare

    opts = Options(
        path=path, model=model, output=output, to_chat=to_chat, show_masks=show_masks, stats=stats
    )
    outcome = prepare(opts, ClickConsole(quiet), _tokenizer_loader(model))
    sys.exit(outcome.exit_code)


commands: list[click.Command] = [prepare_data]
