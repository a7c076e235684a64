"""OpenAI chat and completion requests as generation arguments, and finished
generations as OpenAI's response objects: shared by the routes and by batches,
so a request answers the same whichever door it came through."""

from __future__ import annotations

from typing import Any

from tunelab.errors import InvalidRequest
from tunelab.inference import openai_format as fmt
from tunelab.inference.chat_output import chat_message
from tunelab.inference.params import SamplingRequest
from tunelab.inference.service import Choice, Submitted
from tunelab.limits import MAX_PROMPTS
from tunelab.protocol import chat as c
from tunelab.protocol import completions as tc

# Fields beyond the declared ones that change nothing tunelab computes (bookkeeping,
# routing hints, `none`-valued switches). Any other undeclared field is refused by
# name: a parameter is implemented or refused, never silently ignored.
_HARMLESS = {
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
}
_HARMLESS_VALUES: dict[str, tuple[Any, ...]] = {
    "modalities": (None, ["text"]),
}


def refuse_undeclared(extra: dict[str, Any] | None) -> None:
    for name, value in (extra or {}).items():
        if name in _HARMLESS or value in _HARMLESS_VALUES.get(name, ()):
            continue
        raise InvalidRequest(f"'{name}' is not supported by tunelab yet; remove it.", param=name)


def chat_sampling(body: c.ChatCompletionRequest) -> SamplingRequest:
    """Sampling of a chat request; its tools and response_format are checked
    separately (inference.chat_output.chat_plan), since they need the tokenizer-free
    grammar compiler and may take a moment."""
    refuse_undeclared(body.model_extra)
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    use_mct = body.max_completion_tokens is not None
    return SamplingRequest(
        max_tokens=body.max_completion_tokens if use_mct else body.max_tokens,
        max_tokens_param="max_completion_tokens" if use_mct else "max_tokens",
        temperature=body.temperature,
        top_p=body.top_p,
        n=body.n,
        stop=body.stop,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs,
    )


def chat_completion(
    body: c.ChatCompletionRequest, sub: Submitted, choices: list[Choice], cid: str, created: int
) -> c.ChatCompletion:
    out = []
    for ch in choices:
        message, reason = chat_message(sub.plan, ch)
        lps = fmt.chat_logprobs(sub.tokenizer, ch.logprobs) if body.logprobs else None
        out.append(
            c.ChatChoice(index=ch.index, message=message, finish_reason=reason, logprobs=lps)
        )
    return c.ChatCompletion(
        id=cid,
        created=created,
        model=sub.model,
        choices=out,
        usage=fmt.usage(sub.prompt_tokens, sum(ch.completion_tokens for ch in choices)),
    )


def prompts(prompt: str | list[str] | list[int] | list[list[int]] | None) -> list[str | list[int]]:
    """The prompts of a /v1/completions request: at most MAX_PROMPTS, each queued as
    its own generation, so that a request never asks for more than the queue holds."""
    if prompt is None or prompt == "" or prompt == []:
        return [""]
    if isinstance(prompt, str):
        return [prompt]
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    if len(prompt) > MAX_PROMPTS:
        raise InvalidRequest(
            f"'prompt' holds {len(prompt)} prompts; at most {MAX_PROMPTS} are allowed per "
            "request. Split them over several requests.",
            param="prompt",
        )
    return list(prompt)  # type: ignore[arg-type]


def completion_sampling(body: tc.CompletionRequest) -> SamplingRequest:
    refuse_undeclared(body.model_extra)
    if body.suffix:
        raise InvalidRequest(
            "'suffix' (insert mode) is not supported by tunelab models; put all the text in "
            "'prompt'.",
            param="suffix",
        )
    if body.best_of is not None and body.best_of != (body.n or 1):
        raise InvalidRequest(
            "'best_of' is not supported; leave it unset or equal to 'n'.", param="best_of"
        )
    if body.logprobs is not None and not 0 <= body.logprobs <= 5:
        raise InvalidRequest(
            f"'logprobs' must be between 0 and 5, got {body.logprobs}.", param="logprobs"
        )
    return SamplingRequest(
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        n=body.n,
        stop=body.stop,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias,
        logprobs=body.logprobs is not None,
        top_logprobs=body.logprobs,
    )


def completion(
    body: tc.CompletionRequest,
    subs: list[Submitted],
    per_prompt: list[list[Choice]],
    echoes: list[str],
    cid: str,
    created: int,
) -> tc.Completion:
    n = body.n or 1

    def choice(k: int, sub: Submitted, ch: Choice) -> tc.CompletionChoice:
        lps = None
        if body.logprobs is not None:
            lps = fmt.completion_logprobs(sub.tokenizer, ch.logprobs, len(echoes[k]), body.logprobs)
        return tc.CompletionChoice(
            index=k * n + ch.index,
            text=echoes[k] + ch.text,
            finish_reason=ch.finish_reason,
            logprobs=lps,
        )

    return tc.Completion(
        id=cid,
        created=created,
        model=subs[0].model,
        choices=[
            choice(k, s, ch)
            for k, (s, chs) in enumerate(zip(subs, per_prompt, strict=True))
            for ch in chs
        ],
        usage=fmt.usage(
            sum(s.prompt_tokens for s in subs),
            sum(ch.completion_tokens for chs in per_prompt for ch in chs),
        ),
    )
