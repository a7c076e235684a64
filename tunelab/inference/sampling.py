"""Choosing the next token from a row of logits, the OpenAI way.

Order: logit_bias, presence/frequency penalties (OpenAI's formula, over the
tokens this choice generated), optional constraint mask (JSON mode), then
temperature (0 = greedy) and nucleus (top_p) sampling from a per-choice
`torch.Generator`, so a seed reproduces a choice exactly. Reported logprobs are
those of the model's own distribution (before bias, penalties and temperature).
"""

from __future__ import annotations

from collections import Counter

import torch

from tunelab.inference.handle import SamplingParams, TokenLogprob


def make_generator(seed: int | None, choice_index: int) -> torch.Generator:
    """One generator per choice: choice i of seed s is reproducible on its own."""
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed((seed * 1_000_003 + choice_index) % (2**63))
    return g


def adjust_logits(
    logits: torch.Tensor, params: SamplingParams, counts: Counter[int]
) -> torch.Tensor:
    """Bias and penalties applied to a float32 copy of one row of logits."""
    out = logits.float().clone()
    if params.logit_bias:
        ids = torch.tensor(list(params.logit_bias.keys()))
        out[ids] += torch.tensor(list(params.logit_bias.values()))
    if counts and (params.presence_penalty or params.frequency_penalty):
        ids = torch.tensor(list(counts.keys()))
        freq = torch.tensor(list(counts.values()), dtype=out.dtype)
        out[ids] -= freq * params.frequency_penalty + params.presence_penalty
    return out


def choose(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Greedy at temperature 0, else top_p sampling at the given temperature.

    Defined for every value the API accepts: top_p 0 keeps the single most likely
    token (OpenAI's reading), and a temperature so small that dividing by it
    overflows becomes greedy instead of a distribution of NaNs."""
    best = int(torch.argmax(logits))
    if params.temperature == 0:
        return best
    # Shifting by the maximum first keeps the best logit at 0 whatever the
    # temperature: the others can only overflow to -inf, never to NaN.
    probs = torch.softmax((logits - logits[best]) / params.temperature, dim=-1)
    if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
        return best
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p, and always the first token
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        keep[0] = True
        pick = torch.multinomial(sorted_probs * keep, 1, generator=generator)
        return int(order[pick])
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprob(logits: torch.Tensor, token_id: int, top_k: int) -> TokenLogprob:
    logp = torch.log_softmax(logits.float(), dim=-1)
    top: list[tuple[int, float]] = []
    if top_k > 0:
        vals, ids = torch.topk(logp, top_k)
        top = [(int(i), float(v)) for i, v in zip(ids, vals, strict=False)]
    return TokenLogprob(token_id=token_id, logprob=float(logp[token_id]), top=top)
