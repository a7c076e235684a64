"""`tunelab chat` and `tunelab complete`: call any model (base, fine-tuned,
checkpoint) through the server with the official openai SDK, streaming."""

from __future__ import annotations

from typing import Any

import click

from tunelab.cli.client import api_errors, make_client
from tunelab.settings import Settings


def _stream_reply(client: Any, model: str, messages: list[dict[str, str]], **kwargs: Any) -> str:
    """Print the assistant's reply as it arrives; return it whole."""
    parts = []
    for chunk in client.chat.completions.create(
        model=model, messages=messages, stream=True, **kwargs
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
            click.echo(parts[-1], nl=False)
    click.echo()
    return "".join(parts)


@click.command()
@click.argument("prompt", required=False)
@click.option("-m", "--model", default=None, help="Model id (default: the default chat model).")
@click.option("-s", "--system", default=None, help="System message.")
@click.option("--max-tokens", type=int, default=None, help="Upper bound on each reply's tokens.")
@click.option("--temperature", type=float, default=None, help="0 = deterministic; default 1.")
@api_errors
def chat(
    prompt: str | None,
    model: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
) -> None:
    """Chat with a model: one answer for PROMPT, or an interactive session.

    \b
    Examples:
      tunelab chat "What is the capital of France?"
      tunelab chat -m smollm2-135m-instruct -s "Answer in one sentence."
    Interactive: the conversation is kept; an empty line or Ctrl-D ends it.
    """
    client = make_client()
    model = model or Settings().default_chat_model
    kwargs = {
        k: v
        for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items()
        if v is not None
    }
    messages = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        _stream_reply(client, model, [*messages, {"role": "user", "content": prompt}], **kwargs)
        return
    click.echo(f"Chatting with {model}. An empty line or Ctrl-D ends.", err=True)
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except (EOFError, click.Abort):
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        reply = _stream_reply(client, model, messages, **kwargs)
        messages.append({"role": "assistant", "content": reply})


@click.command()
@click.argument("prompt")
@click.option("-m", "--model", default=None, help="Model id (default: the default chat model).")
@click.option("--max-tokens", type=int, default=16, show_default=True)
@click.option("--temperature", type=float, default=None, help="0 = deterministic; default 1.")
@click.option(
    "--stop", multiple=True, help=r"Stop sequence (repeatable, up to 4); \n and \t are understood."
)
@api_errors
def complete(
    prompt: str,
    model: str | None,
    max_tokens: int,
    temperature: float | None,
    stop: tuple[str, ...],
) -> None:
    """Continue PROMPT with the legacy completions API (prompt/completion fine-tunes).

    \b
    Example:
      tunelab complete "The three primary colors are" --max-tokens 20 --stop "\\n"
    """
    kwargs: dict[str, Any] = {"max_tokens": max_tokens}
    if temperature is not None:
        kwargs["temperature"] = temperature
    if stop:
        # a shell passes "\n" as backslash + n; users mean a newline
        kwargs["stop"] = [s.replace("\\n", "\n").replace("\\t", "\t") for s in stop]
    model = model or Settings().default_chat_model
    for chunk in make_client().completions.create(
        model=model, prompt=prompt, stream=True, **kwargs
    ):
        if chunk.choices:
            click.echo(chunk.choices[0].text, nl=False)
    click.echo()


commands: list[click.Command] = [chat, complete]
