"""Examples -> token ids with a loss mask: what the model is trained on, exactly.

Used by the training loop and by `tunelab prepare-data --show-masks`, so the
preview a user sees is the mask training applies.

Chat examples are rendered with the base model's own chat template. The tokens of
each assistant turn (its content and its end-of-turn token) are trained; system,
user and tool turns, the role headers, and assistant turns with `"weight": 0` are
not. Prompt/completion examples are trained on the completion only, followed by
the end-of-sequence token, so the model learns to stop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100  # label value that cross-entropy skips


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE where the token is not trained on
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _render_content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # text parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not content and message.get("tool_calls"):
        content = json.dumps(message["tool_calls"], ensure_ascii=False)
    if not content and message.get("function_call"):
        content = json.dumps(message["function_call"], ensure_ascii=False)
    return content or ""


def template_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages reduced to what chat templates expect: role + string content."""
    out = []
    for m in messages:
        role = m.get("role", "user")
        if role == "developer":
            role = "system"
        out.append({"role": role, "content": _render_content(m)})
    return out


def _render(tokenizer: Any, messages: list[dict[str, str]], gen_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)
    assert isinstance(text, str)
    return text


def _trained_spans(
    tokenizer: Any, raw: Sequence[dict[str, Any]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of trained assistant turns."""
    msgs = template_messages(raw)
    full = _render(tokenizer, msgs, False)
    spans = []
    for i, m in enumerate(raw):
        if m.get("role") != "assistant" or m.get("weight", 1) == 0 or i == 0:
            continue
        before = _render(tokenizer, msgs[:i], True)
        upto = _render(tokenizer, msgs[: i + 1], False)
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
    tokenizer: Any, messages: Sequence[dict[str, Any]], *, max_length: int | None = None
) -> EncodedExample:
    full, spans = _trained_spans(tokenizer, messages)
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
    """A normalised example: {"messages": [...]} or {"prompt": ..., "completion": ...}."""
    if "messages" in example:
        return encode_chat(tokenizer, example["messages"], max_length=max_length)
    return encode_prompt_completion(
        tokenizer, example["prompt"], example["completion"], max_length=max_length
    )


def _truncate(ids: list[int], labels: list[int], max_length: int | None) -> EncodedExample:
    if max_length is not None and len(ids) > max_length:
        return EncodedExample(ids[:max_length], labels[:max_length], truncated=True)
    return EncodedExample(ids, labels)
