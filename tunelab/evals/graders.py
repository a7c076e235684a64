"""Running testing criteria on one row: (item, sample) in, a score and pass/fail out.

  string_check     eq (exact), ne, like (contains), ilike (contains, any case): 1 or 0
  text_similarity  the metric's score (tunelab.evals.similarity); pass at >= threshold
  label_model      the judge's label (constrained to `labels`); pass if in passing_labels
  score_model      the judge's number, clipped to `range`; pass at >= pass_threshold
                   (without one: at >= the middle of the range); not a number -> 0
  multi            `calculate_output` over the sub-graders' scores; pass at >= threshold

A grader that cannot finish (the judge model was deleted, the formula divides by
zero) gives a failed result with `error` set, and the row counts as errored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import TunelabError
from tunelab.evals import formula, similarity
from tunelab.evals.criteria import (
    Criterion,
    JudgeSampling,
    LabelModel,
    Message,
    Multi,
    Simple,
    StringCheck,
    TextSimilarity,
)
from tunelab.evals.judging import Judge, Verdict
from tunelab.evals.templates import render

# Texts -> their similarity (cosine of normalised embeddings).
Cosine = Callable[[str, str], float]


@dataclass
class Usage:
    invocation_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class UsageTally:
    """Tokens per model across a run: the evaluated model and every judge."""

    by_model: dict[str, Usage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, model: str, invocations: int, prompt: int, completion: int) -> None:
        with self._lock:
            u = self.by_model.setdefault(model, Usage())
            u.invocation_count += invocations
            u.prompt_tokens += prompt
            u.completion_tokens += completion

    def merge(self, stored: Mapping[str, Mapping[str, int]]) -> None:
        for model, u in stored.items():
            self.add(model, u["invocation_count"], u["prompt_tokens"], u["completion_tokens"])

    def to_json(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {m: vars(u).copy() for m, u in self.by_model.items()}


@dataclass(frozen=True)
class Grade:
    name: str
    type: str
    passed: bool
    score: float
    sample: dict[str, Any] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "passed": self.passed,
            "score": self.score,
            "sample": self.sample,
        }
        if self.error is not None:
            out["error"] = self.error
        out.update(self.extra)
        return out


@dataclass
class Grading:
    """What graders need besides the row: the project, a judge, embeddings, a tally."""

    project: str
    judge: Judge
    cosine: Cosine
    usage: UsageTally


def _judge_sample(model: str, prompt: list[dict[str, str]], verdict: Verdict) -> dict[str, Any]:
    return {
        "model": model,
        "input": prompt,
        "output": [{"role": "assistant", "content": verdict.text}],
        "usage": {
            "prompt_tokens": verdict.prompt_tokens,
            "completion_tokens": verdict.completion_tokens,
            "total_tokens": verdict.prompt_tokens + verdict.completion_tokens,
            "cached_tokens": 0,
        },
    }


def _rendered(
    messages: tuple[Message, ...], item: Mapping[str, Any], sample: Mapping[str, Any] | None
) -> list[Message]:
    return [Message(m.role, render(m.content, item, sample)) for m in messages]


def _simple(
    c: Simple, item: Mapping[str, Any], sample: Mapping[str, Any] | None, ctx: Grading
) -> Grade:
    if isinstance(c, StringCheck):
        text, ref = render(c.input, item, sample), render(c.reference, item, sample)
        ok = {
            "eq": text == ref,
            "ne": text != ref,
            "like": ref in text,
            "ilike": ref.lower() in text.lower(),
        }[c.operation]
        return Grade(c.name, "string_check", ok, 1.0 if ok else 0.0)
    if isinstance(c, TextSimilarity):
        text, ref = render(c.input, item, sample), render(c.reference, item, sample)
        value = (
            ctx.cosine(text, ref) if c.metric == "cosine" else similarity.score(c.metric, text, ref)
        )
        return Grade(c.name, "text_similarity", value >= c.pass_threshold, value)
    messages = _rendered(c.input, item, sample)
    prompt = [{"role": m.role, "content": m.content} for m in messages]
    if isinstance(c, LabelModel):
        verdict = ctx.judge.label(ctx.project, c.model, messages, c.labels, JudgeSampling())
        ctx.usage.add(
            c.model, verdict.invocations, verdict.prompt_tokens, verdict.completion_tokens
        )
        ok = verdict.text in c.passing_labels
        return Grade(
            c.name,
            "label_model",
            ok,
            1.0 if ok else 0.0,
            _judge_sample(c.model, prompt, verdict),
            extra={"label": verdict.text},
        )
    verdict = ctx.judge.score(ctx.project, c.model, messages, c.low, c.high, c.sampling)
    ctx.usage.add(c.model, verdict.invocations, verdict.prompt_tokens, verdict.completion_tokens)
    try:
        value = min(c.high, max(c.low, float(verdict.text)))
    except ValueError:
        value = 0.0
    threshold = c.pass_threshold if c.pass_threshold is not None else (c.low + c.high) / 2
    return Grade(
        c.name, "score_model", value >= threshold, value, _judge_sample(c.model, prompt, verdict)
    )


def grade(
    c: Criterion, item: Mapping[str, Any], sample: Mapping[str, Any] | None, ctx: Grading
) -> Grade:
    """One criterion's result for one row; never raises for a row's own problems."""
    kind = "multi" if isinstance(c, Multi) else type(c).__name__
    try:
        if not isinstance(c, Multi):
            return _simple(c, item, sample, ctx)
        subs = {key: _simple(sub, item, sample, ctx) for key, sub in c.graders.items()}
        failed = next((g.error for g in subs.values() if g.error), None)
        if failed is not None:
            return Grade(c.name, "multi", False, 0.0, error=failed)
        value = formula.evaluate(c.calculate_output, {k: g.score for k, g in subs.items()})
        return Grade(
            c.name,
            "multi",
            value >= c.pass_threshold,
            value,
            extra={"sub_scores": {k: g.score for k, g in subs.items()}},
        )
    except (TunelabError, formula.FormulaError, RuntimeError, ValueError) as e:
        message = e.message if isinstance(e, TunelabError) else str(e)
        return Grade(c.name, _TYPES.get(kind, kind), False, 0.0, error=message)


_TYPES = {
    "StringCheck": "string_check",
    "TextSimilarity": "text_similarity",
    "LabelModel": "label_model",
    "ScoreModel": "score_model",
}
