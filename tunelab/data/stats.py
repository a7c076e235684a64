"""Token statistics, the `auto` epoch rule, cost/time estimates and loss-mask previews.

Counts come from `encode_example` with the base model's own tokenizer and chat
template, so "tokens per example", "truncated" and the trained-token mask are
exactly what the training process will see.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Measured: SmolLM2-135M LoRA training with bf16 autocast on 2 CPU cores runs at
# ~350-400 tokens/s (fp32: ~160). The estimate uses the low end.
TRAINING_TOKENS_PER_SECOND = 350

# OpenAI's `auto` n_epochs rule (contract §2.9): aim for 3 epochs, but see at least
# 100 and at most 25,000 examples in total, within 1..25 epochs.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MAX_AUTO_EPOCHS = 25


def auto_n_epochs(n_examples: int) -> int:
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_AUTO_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


# Tokenizing with the chat template costs ~1-3 ms per example; above this many
# examples the statistics come from an evenly spaced sample and are scaled up.
STATS_SAMPLE = 20_000


@dataclass
class TokenStats:
    n_examples: int  # in the file; the lists below may hold a sample of them
    messages: list[int]  # messages per example (chat), ascending
    tokens: list[int]  # tokens per example, ascending
    trained: int  # tokens the loss is computed on, summed over the sample
    context: int
    n_epochs: int

    @property
    def scale(self) -> float:
        return self.n_examples / len(self.tokens) if self.tokens else 1.0

    @property
    def n_truncated(self) -> int:
        return round(sum(t > self.context for t in self.tokens) * self.scale)

    @property
    def billed_tokens(self) -> int:
        return round(sum(min(t, self.context) for t in self.tokens) * self.scale) * self.n_epochs

    @property
    def est_seconds(self) -> float:
        return self.billed_tokens / TRAINING_TOKENS_PER_SECOND

    def lines(self, model: str) -> list[str]:
        t = self.tokens
        out = [f"- Examples: {self.n_examples}"]
        if len(t) < self.n_examples:
            out[0] += f" (token statistics from an evenly spaced sample of {len(t):,}, scaled up)"
        if self.messages:
            m = self.messages
            out.append(
                f"- Messages per example: min {m[0]}, mean {sum(m) / len(m):.1f}, max {m[-1]}"
            )
        out += [
            f"- Tokens per example ({model} tokenizer): min {t[0]}, mean {sum(t) / len(t):.1f}, "
            f"p90 {percentile(t, 0.9)}, max {t[-1]}",
            "- Trained tokens (assistant turns / completions): "
            f"{round(self.trained * self.scale):,} "
            f"of {round(sum(t) * self.scale):,}",
        ]
        if self.n_truncated:
            out.append(
                f"- {self.n_truncated} examples are longer than the model's context of "
                f"{self.context} tokens and will be truncated"
            )
        out += [
            f"- Epochs with n_epochs=auto: {self.n_epochs}",
            "- Billed tokens (tokens per example capped at the context, x epochs): "
            f"{self.billed_tokens:,}",
            f"- Estimated training time on this machine: {format_duration(self.est_seconds)} "
            f"(at ~{TRAINING_TOKENS_PER_SECOND} tokens/s, {model} with LoRA on 2 CPU cores)",
        ]
        return out


def token_stats(
    tokenizer: Any,
    examples: Iterable[dict[str, Any]],
    n_examples: int,
    *,
    context: int,
    on_example: Callable[[], None] | None = None,
    sample: int = STATS_SAMPLE,
) -> TokenStats:
    """Statistics of `n_examples` examples, tokenizing at most `sample` of them."""
    from tunelab.data.encoding import encode_example

    stride = max(1, math.ceil(n_examples / sample))
    messages, tokens, trained = [], [], 0
    for ex in itertools.islice(examples, 0, None, stride):
        enc = encode_example(tokenizer, ex)
        tokens.append(len(enc.input_ids))
        trained += enc.n_trained
        if "messages" in ex:
            messages.append(len(ex["messages"]))
        if on_example is not None:
            on_example()
    tokens.sort()
    messages.sort()
    return TokenStats(
        n_examples=n_examples,
        messages=messages,
        tokens=tokens,
        trained=trained,
        context=context,
        n_epochs=auto_n_epochs(n_examples),
    )


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def mask_segments(tokenizer: Any, example: dict[str, Any]) -> list[tuple[str, bool]]:
    """The example as it is tokenized, in runs of (text, trained).

    Consecutive tokens with the same mask are decoded together, so characters
    that span several byte-level tokens (Chinese, emoji) stay readable.
    """
    from tunelab.data.encoding import IGNORE, encode_example

    enc = encode_example(tokenizer, example)
    segments: list[tuple[str, bool]] = []
    run: list[int] = []
    for i, token in enumerate(enc.input_ids):
        trained = enc.labels[i] != IGNORE
        if run and trained != (enc.labels[i - 1] != IGNORE):
            segments.append((tokenizer.decode(run), not trained))
            run = []
        run.append(token)
    if run:
        segments.append((tokenizer.decode(run), enc.labels[-1] != IGNORE))
    return segments
