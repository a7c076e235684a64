"""Checking request parameters and turning them into SamplingParams.

Every check names the offending parameter (the SDK surfaces `param`) and says
what range is allowed, so a client can fix the call without reading our code.
"""

from __future__ import annotations

from typing import Any

from tunelab.errors import InvalidRequest
from tunelab.inference.sampling import SamplingParams

MAX_STOP = 4
MAX_N = 128
MAX_TOP_LOGPROBS = 20


def _range(name: str, value: float | int | None, lo: float, hi: float) -> None:
    if value is not None and not lo <= value <= hi:
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


def sampling_params(
    *,
    prompt_tokens: int,
    context_length: int,
    vocab_size: int,
    max_tokens: int | None,
    max_tokens_param: str = "max_tokens",
    prompt_param: str = "messages",
    temperature: float | None = 1.0,
    top_p: float | None = 1.0,
    n: int | None = 1,
    stop: str | list[str] | None = None,
    seed: int | None = None,
    presence_penalty: float | None = 0.0,
    frequency_penalty: float | None = 0.0,
    logit_bias: dict[str, Any] | None = None,
    logprobs: bool = False,
    top_logprobs: int | None = None,
    json_mode: bool = False,
) -> SamplingParams:
    """Validate everything and fix max_tokens against the model's context window."""
    _range("temperature", temperature, 0, 2)
    _range("top_p", top_p, 0, 1)
    _range("n", n, 1, MAX_N)
    _range("presence_penalty", presence_penalty, -2, 2)
    _range("frequency_penalty", frequency_penalty, -2, 2)
    _range("top_logprobs", top_logprobs, 0, MAX_TOP_LOGPROBS)
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequest(
            f"'{max_tokens_param}' must be at least 1, got {max_tokens}.", param=max_tokens_param
        )
    room = context_length - prompt_tokens
    if room < 1:
        raise InvalidRequest(
            f"The prompt is {prompt_tokens} tokens, but this model's context length is {context_length} tokens. "
            "Shorten the prompt.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if max_tokens is not None and max_tokens > room:
        raise InvalidRequest(
            f"This model's context length is {context_length} tokens; the prompt uses {prompt_tokens}, so "
            f"'{max_tokens_param}' can be at most {room} (got {max_tokens}).",
            param=max_tokens_param,
            code="context_length_exceeded",
        )
    return SamplingParams(
        max_tokens=max_tokens if max_tokens is not None else room,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        n=n or 1,
        stop=stop_list(stop),
        seed=seed,
        presence_penalty=float(presence_penalty or 0.0),
        frequency_penalty=float(frequency_penalty or 0.0),
        logit_bias=logit_bias_map(logit_bias, vocab_size),
        logprobs=logprobs,
        top_logprobs=top_logprobs or 0,
        json_mode=json_mode,
    )
