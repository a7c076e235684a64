"""Checking request parameters and turning them into SamplingParams.

Every check names the offending parameter (the SDK surfaces `param`) and says
what range is allowed, so a client can fix the call without reading our code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.errors import InvalidRequest
from tunelab.inference.handle import SamplingParams
from tunelab.limits import MAX_N

MAX_STOP = 4
MAX_TOP_LOGPROBS = 20


def _range(name: str, value: float | int | None, lo: float, hi: float) -> None:
    # bool is an int to Python, but `"n": true` is a mistake, not 1; NaN fails the
    # comparison and so is refused too
    if value is not None and (isinstance(value, bool) or not lo <= value <= hi):
        raise InvalidRequest(
            f"'{name}' must be between {lo:g} and {hi:g}, got {value!r}.", param=name
        )


def stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP:
        raise InvalidRequest(
            f"'stop' takes at most {MAX_STOP} sequences, got {len(stops)}.", param="stop"
        )
    if any(not isinstance(s, str) or not s for s in stops):
        raise InvalidRequest("Each 'stop' sequence must be a non-empty string.", param="stop")
    return tuple(stops)


def logit_bias_map(bias: dict[str, Any] | None, vocab_size: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in (bias or {}).items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequest(
                f"'logit_bias' keys must be token ids, got {key!r}.", param="logit_bias"
            ) from None
        if not 0 <= token < vocab_size:
            raise InvalidRequest(
                f"'logit_bias' token id {token} is outside the vocabulary (0..{vocab_size - 1}).",
                param="logit_bias",
            )
        _range("logit_bias", value, -100, 100)
        out[token] = float(value)
    return out


@dataclass(frozen=True)
class SamplingRequest:
    """Sampling options as a request gave them (None = the parameter was not sent)."""

    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    n: int | None = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    logit_bias: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    grammar: str | None = None  # llguidance grammar text (inference.grammars / output_plan)


def sampling_params(
    req: SamplingRequest,
    *,
    prompt_tokens: int,
    context_length: int,
    vocab_size: int,
    prompt_param: str = "messages",
    default_max_tokens: int | None = None,
) -> SamplingParams:
    """Validate everything and fix max_tokens against the model's context window.

    With no max_tokens in the request, generation may fill the context window, or
    stop at `default_max_tokens` when the operator set one (TUNELAB_DEFAULT_MAX_TOKENS)."""
    _range("temperature", req.temperature, 0, 2)
    _range("top_p", req.top_p, 0, 1)
    if req.n is not None and not 1 <= req.n <= MAX_N:
        raise InvalidRequest(
            f"'n' must be between 1 and {MAX_N} (each choice holds its own cache while it "
            f"is generated), got {req.n!r}.",
            param="n",
        )
    _range("presence_penalty", req.presence_penalty, -2, 2)
    _range("frequency_penalty", req.frequency_penalty, -2, 2)
    _range("top_logprobs", req.top_logprobs, 0, MAX_TOP_LOGPROBS)
    if req.max_tokens is not None and req.max_tokens < 1:
        raise InvalidRequest(
            f"'{req.max_tokens_param}' must be at least 1, got {req.max_tokens}.",
            param=req.max_tokens_param,
        )
    room = context_length - prompt_tokens
    if room < 1:
        raise InvalidRequest(
            f"The prompt is {prompt_tokens} tokens, but this model's context length is "
            f"{context_length} tokens. "
            "Shorten the prompt.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if req.max_tokens is not None and req.max_tokens > room:
        raise InvalidRequest(
            f"This model's context length is {context_length} tokens; "
            f"the prompt uses {prompt_tokens}, so "
            f"'{req.max_tokens_param}' can be at most {room} (got {req.max_tokens}).",
            param=req.max_tokens_param,
            code="context_length_exceeded",
        )
    return SamplingParams(
        max_tokens=req.max_tokens
        if req.max_tokens is not None
        else min(room, default_max_tokens or room),
        temperature=1.0 if req.temperature is None else float(req.temperature),
        top_p=1.0 if req.top_p is None else float(req.top_p),
        n=req.n or 1,
        stop=stop_list(req.stop),
        seed=req.seed,
        presence_penalty=float(req.presence_penalty or 0.0),
        frequency_penalty=float(req.frequency_penalty or 0.0),
        logit_bias=logit_bias_map(req.logit_bias, vocab_size),
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs or 0,
        grammar=req.grammar,
    )
