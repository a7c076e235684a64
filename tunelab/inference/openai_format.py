"""Generated choices and events turned into OpenAI's chat and completion objects."""

from __future__ import annotations

from typing import Any

from tunelab.inference.handle import TokenLogprob
from tunelab.inference.tokens import token_bytes, token_text
from tunelab.protocol import chat as c
from tunelab.protocol import completions as tc


def usage(prompt_tokens: int, completion_tokens: int) -> c.Usage:
    return c.Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def chat_logprobs(tokenizer: Any, lps: list[TokenLogprob]) -> c.ChoiceLogprobs:
    def top(tid: int, lp: float) -> c.TopLogprob:
        return c.TopLogprob(
            token=token_text(tokenizer, tid), logprob=lp, bytes=token_bytes(tokenizer, tid)
        )

    return c.ChoiceLogprobs(
        content=[
            c.TokenLogprob(
                token=token_text(tokenizer, t.token_id),
                logprob=t.logprob,
                bytes=token_bytes(tokenizer, t.token_id),
                top_logprobs=[top(tid, lp) for tid, lp in t.top],
            )
            for t in lps
        ]
    )


def completion_logprobs(
    tokenizer: Any, lps: list[TokenLogprob], offset: int, top_n: int
) -> tc.CompletionLogprobs:
    """Legacy shape: parallel lists; `offset` is where the generated text starts."""
    tokens, offsets = [], []
    for t in lps:
        text = token_text(tokenizer, t.token_id)
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
    return tc.CompletionLogprobs(
        tokens=tokens,
        token_logprobs=[t.logprob for t in lps],
        # legacy semantics: up to `logprobs` alternatives plus the chosen token
        top_logprobs=[
            {
                token_text(tokenizer, tid): lp
                for tid, lp in [*t.top[:top_n], (t.token_id, t.logprob)]
            }
            for t in lps
        ],
        text_offset=offsets,
    )
