"""The `tunelab` command. Resource commands talk to a server through the official
openai SDK (TUNELAB_BASE_URL, TUNELAB_API_KEY); `serve`, `keys` and `prepare-data`
run locally."""

from __future__ import annotations

import importlib

import click

from tunelab import __version__

# Each module exposes `commands: list[click.Command]`.
COMMAND_MODULES = [
    "tunelab.cli.server",
    "tunelab.cli.files",
    "tunelab.cli.models",
    "tunelab.cli.data",
    "tunelab.cli.jobs",
    "tunelab.cli.chat",
    "tunelab.cli.stores",
    "tunelab.cli.batches",
    "tunelab.cli.tutorial",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tunelab")
def cli() -> None:
    """tunelab: OpenAI-compatible fine-tuning, embeddings and retrieval on your own machine.

    \b
    Start the server:   tunelab serve
    Then use it:        tunelab models list
                        tunelab embed "hello" "你好"
    """


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="tunelab")
