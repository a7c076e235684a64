"""Model judges for `label_model` and `score_model` graders, answering only in the allowed set.

A small judge asked "answer positive or negative" may well answer "Positive!" or
explain itself. OpenAI constrains its judges with structured outputs; here the
`Judge` seam does the same job:

    judge.label(project, model, messages, labels, sampling)  -> one of `labels`
    judge.score(project, model, messages, low, high, sampling) -> a number

`MaskedJudge` is built on what the inference service offers today: it decodes the
answer token by token through the legacy completions path (token-id prompts), and
at each step gives every token that may come next (the next token of some label;
a digit, '.' or '-' of a number) a +100 logit bias, which makes every other token
practically impossible (a logit gap of 100 is a probability factor of e^-100), and
checks the token it gets back. Labels therefore come out exactly as written. When
the grammar engine of the structured-outputs work lands in `tunelab.inference`, a
judge that asks for a JSON schema (an enum of labels, a number in range) plugs in
behind the same Protocol.

A short system line tells the judge which answers it may give, as structured
outputs do by showing the model its schema.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tunelab.evals.criteria import JudgeSampling, Message
from tunelab.inference.params import SamplingRequest
from tunelab.inference.service import InferenceService

BIAS = 100.0
MAX_NUMBER_CHARS = 8  # tokens of a score at most (digits, '.', '-')
_NUMBER_PREFIX = re.compile(r"-?\d*(\.\d*)?")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@dataclass(frozen=True)
class Verdict:
    text: str  # exactly what the judge answered
    prompt_tokens: int
    completion_tokens: int
    invocations: int


class Judge(Protocol):
    def label(
        self,
        project: str,
        model: str,
        messages: Sequence[Message],
        labels: Sequence[str],
        sampling: JudgeSampling,
    ) -> Verdict:
        """The judge's label: always one of `labels`."""
        ...

    def score(
        self,
        project: str,
        model: str,
        messages: Sequence[Message],
        low: float,
        high: float,
        sampling: JudgeSampling,
    ) -> Verdict:
        """The judge's score as text: digits, '.' and '-' only (the grader parses it and
        clips it to the range; an unfinished number scores 0)."""
        ...


_numeric_cache: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


def _numeric_tokens(tokenizer: Any) -> dict[int, str]:
    """Token id -> text for every token made only of digits, '.' and '-'."""
    found = _numeric_cache.get(tokenizer)
    if found is None:
        found = {}
        for tid in range(len(tokenizer)):
            text = tokenizer.decode([tid])
            if text and all(c in "0123456789.-" for c in text):
                found[tid] = text
        _numeric_cache[tokenizer] = found
    return found


class MaskedJudge:
    """A `Judge` over the inference service, constrained by logit-bias masks."""

    def __init__(self, inference: InferenceService) -> None:
        self.inference = inference

    def _prompt(
        self, project: str, model: str, messages: Sequence[Message], rule: str
    ) -> tuple[Any, list[int]]:
        target = self.inference.target(project, model)
        tokenizer = self.inference.engine.tokenizer(target)
        chat = [{"role": "system", "content": rule}] + [
            {"role": m.role, "content": m.content} for m in messages
        ]
        return tokenizer, self.inference.chat_prompt(tokenizer, target.id, chat)

    def _step(
        self,
        project: str,
        model: str,
        ids: list[int],
        allowed: Sequence[int],
        sampling: JudgeSampling,
    ) -> int:
        sub = self.inference.start_completion(
            project,
            model,
            ids,
            SamplingRequest(
                max_tokens=1,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
                logit_bias={str(t): BIAS for t in allowed},
                logprobs=True,
            ),
        )
        choice = sub.collect()[0]
        token = choice.logprobs[0].token_id if choice.logprobs else None
        if token not in allowed:
            raise RuntimeError("the judge produced a token outside the allowed answers")
        assert token is not None
        return token

    def label(
        self,
        project: str,
        model: str,
        messages: Sequence[Message],
        labels: Sequence[str],
        sampling: JudgeSampling,
    ) -> Verdict:
        rule = "Answer with exactly one of these labels and nothing else: " + ", ".join(labels)
        tokenizer, prompt = self._prompt(project, model, messages, rule)
        sequences = {
            label: list(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels
        }
        eos = tokenizer.eos_token_id
        chosen: list[int] = []
        steps = 0
        while True:
            done = [lab for lab, seq in sequences.items() if seq == chosen]
            longer = {
                seq[len(chosen)]
                for seq in sequences.values()
                if len(seq) > len(chosen) and seq[: len(chosen)] == chosen
            }
            if done and not longer:
                break
            allowed = sorted(longer | ({eos} if done and eos is not None else set()))
            token = self._step(project, model, prompt + chosen, allowed, sampling)
            steps += 1
            if done and token == eos:
                break
            chosen.append(token)
        return Verdict(done[0], len(prompt), steps, steps)

    def score(
        self,
        project: str,
        model: str,
        messages: Sequence[Message],
        low: float,
        high: float,
        sampling: JudgeSampling,
    ) -> Verdict:
        rule = f"Answer with a single number from {low:g} to {high:g} and nothing else."
        tokenizer, prompt = self._prompt(project, model, messages, rule)
        numeric = _numeric_tokens(tokenizer)
        eos = tokenizer.eos_token_id
        text, steps = "", 0
        chosen: list[int] = []
        limit = sampling.max_tokens or MAX_NUMBER_CHARS
        # No more integer digits than the range's bounds have, three decimals at most.
        int_digits = len(str(int(max(abs(low), abs(high)))))

        def fits(candidate: str) -> bool:
            m = _NUMBER_PREFIX.fullmatch(candidate)
            if m is None or (low >= 0 and "-" in candidate):
                return False
            whole, _, frac = candidate.lstrip("-").partition(".")
            return len(whole) <= int_digits and len(frac) <= 3

        while steps < limit:
            allowed = [tid for tid, piece in numeric.items() if fits(text + piece)]
            complete = _NUMBER.fullmatch(text) is not None
            if complete and eos is not None:
                allowed.append(eos)
            if not allowed:
                break
            token = self._step(project, model, prompt + chosen, allowed, sampling)
            steps += 1
            if token == eos:
                break
            chosen.append(token)
            text += numeric[token]
        return Verdict(text, len(prompt), steps, steps)
