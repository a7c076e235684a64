"""Examples -> token ids with a loss mask: what the model is trained on, exactly.

Used by the training loop and by `tunelab prepare-data --show-masks`, so the
preview a user sees is the mask training applies.

Chat examples are rendered with the base model's own chat template, tools and
tool calls as `data.chat_render` lays them out (the same rendering serving uses).
The tokens of each assistant turn (its content, its tool calls and its
end-of-turn token) are trained; system, user and tool turns, the role headers,
and assistant turns with `"weight": 0` are not. Prompt/completion examples are
trained on the completion only, followed by the end-of-sequence token, so the
model learns to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.data.chat_render import Function, RenderedChat, functions_of, render_chat

IGNORE = -100  # label value that cross-entropy skips


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE where the token is not trained on
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def template_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages reduced to what chat templates expect (tool calls rendered as text)."""
    return render_chat(None, messages).messages


def _render(tokenizer: Any, chat: RenderedChat, upto: int, gen_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        chat.messages[:upto],
        tokenize=False,
        add_generation_prompt=gen_prompt,
        **chat.template_kwargs,
    )
    assert isinstance(text, str)
    return text


def _trained_spans(
    tokenizer: Any, raw: Sequence[dict[str, Any]], functions: Sequence[Function]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of trained assistant turns."""
    chat = render_chat(tokenizer, raw, functions)
    full = _render(tokenizer, chat, len(chat.messages), False)
    spans = []
    for i, m in enumerate(chat.messages):
        src = chat.source[i]
        if m["role"] != "assistant" or i == 0 or src is None or raw[src].get("weight", 1) == 0:
            continue
        before = _render(tokenizer, chat, i, True)
        upto = _render(tokenizer, chat, i + 1, False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise ValueError(
                "the model's chat template does not render conversations by appending "
                "turns, so assistant turns cannot be located for the loss mask"
            )
        # The turn's text plus its end-of-turn marker; the newline after it belongs
        # to the next turn's header and is not trained.
        spans.append((len(before), len(upto.rstrip())))
    return full, spans


def encode_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    *,
    functions: Sequence[Function] = (),
    max_length: int | None = None,
) -> EncodedExample:
    """A conversation, with the functions it may call, rendered as serving renders it."""
    full, spans = _trained_spans(tokenizer, messages, functions)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    for t, (start, _end) in enumerate(enc["offset_mapping"]):
        if any(s <= start < e for s, e in spans):
            labels[t] = ids[t]
    return _truncate(ids, labels, max_length)


def encode_prompt_completion(
    tokenizer: Any, prompt: str, completion: str, *, max_length: int | None = None
) -> EncodedExample:
    """Raw text, as /v1/completions sees it: prompt untrained, completion + EOS trained."""
    p = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    c = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        c.append(tokenizer.eos_token_id)
    return _truncate(p + c, [IGNORE] * len(p) + c, max_length)


def encode_example(
    tokenizer: Any, example: dict[str, Any], *, max_length: int | None = None
) -> EncodedExample:
    """A normalised example: {"messages": [...], "tools"?, "functions"?} or
    {"prompt": ..., "completion": ...}."""
    if "messages" in example:
        functions = functions_of(example.get("tools"), example.get("functions"))
        return encode_chat(
            tokenizer, example["messages"], functions=functions, max_length=max_length
        )
    return encode_prompt_completion(
        tokenizer, example["prompt"], example["completion"], max_length=max_length
    )


def _truncate(ids: list[int], labels: list[int], max_length: int | None) -> EncodedExample:
    if max_length is not None and len(ids) > max_length:
        return EncodedExample(ids[:max_length], labels[:max_length], truncated=True)
    return EncodedExample(ids, labels)
