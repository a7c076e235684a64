"""Choosing the next token from a row of logits, the OpenAI way.

Order: logit_bias, presence/frequency penalties (OpenAI's formula, over the
tokens this choice generated), optional constraint mask (grammars), then
temperature (0 = greedy) and nucleus (top_p) sampling from a per-choice
generator, so a seed reproduces a choice exactly. Reported logprobs are those of
the model's own distribution (before bias, penalties and temperature).

This is numpy on purpose, on the calling thread only: a row of logits is tens of
thousands of floats, which torch splits across its OpenMP threads, and those
threads spin on after each operation. Next to llama.cpp's own threads (the
llama.cpp engine samples between two of its decode calls) that spinning cost a
quarter of the decoding speed on a 2-core machine.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tunelab.inference.handle import SamplingParams, TokenLogprob

Logits = np.ndarray  # one row, float32


def make_generator(seed: int | None, choice_index: int) -> np.random.Generator:
    """One generator per choice: choice i of seed s is reproducible on its own."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng((seed * 1_000_003 + choice_index) % (2**63))


def adjust_logits(logits: Logits, params: SamplingParams, counts: Counter[int]) -> Logits:
    """Bias and penalties applied to a float32 copy of one row of logits."""
    out = np.array(logits, dtype=np.float32)
    if params.logit_bias:
        ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
        out[ids] += np.fromiter(params.logit_bias.values(), dtype=np.float32)
    if counts and (params.presence_penalty or params.frequency_penalty):
        ids = np.fromiter(counts.keys(), dtype=np.int64)
        freq = np.fromiter(counts.values(), dtype=np.float32)
        out[ids] -= freq * params.frequency_penalty + params.presence_penalty
    return out


def choose(logits: Logits, params: SamplingParams, generator: np.random.Generator) -> int:
    """Greedy at temperature 0, else top_p sampling at the given temperature.

    Defined for every value the API accepts: top_p 0 keeps the single most likely
    token (OpenAI's reading), and a temperature so small that dividing by it
    overflows becomes greedy instead of a distribution of NaNs."""
    best = int(np.argmax(logits))
    if params.temperature == 0:
        return best
    # Shifting by the maximum first keeps the best logit at 0 whatever the
    # temperature: the others can only underflow to 0, never overflow.
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        probs = np.exp((logits - logits[best]) / params.temperature, dtype=np.float64)
        total = float(probs.sum())
    if not np.isfinite(total) or total <= 0:
        return best
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        ranked = probs[order]
        # keep the smallest prefix whose mass reaches top_p, and always the first token
        keep = np.cumsum(ranked) - ranked < params.top_p * total
        keep[0] = True
        return int(order[_draw(ranked[keep], generator)])
    return _draw(probs, generator)


def _draw(weights: np.ndarray, generator: np.random.Generator) -> int:
    """An index drawn with probability proportional to `weights` (not normalised)."""
    cumulative = np.cumsum(weights)
    at = int(np.searchsorted(cumulative, generator.random() * cumulative[-1], side="right"))
    return min(at, len(weights) - 1)


def token_logprob(logits: Logits, token_id: int, top_k: int) -> TokenLogprob:
    row = logits.astype(np.float64)
    top_logit = row.max()
    logp = row - (top_logit + np.log(np.exp(row - top_logit).sum()))
    top: list[tuple[int, float]] = []
    if top_k > 0:
        ids = np.argpartition(-logp, top_k - 1)[:top_k]
        ids = ids[np.argsort(-logp[ids], kind="stable")]
        top = [(int(i), float(logp[i])) for i in ids]
    return TokenLogprob(token_id=token_id, logprob=float(logp[token_id]), top=top)
