"""The sampler both engines share: greedy, temperature, top_p, seeds, bias, penalties,
logprobs, on rows of logits with known distributions."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from tunelab.inference.handle import SamplingParams
from tunelab.inference.sampling import adjust_logits, choose, make_generator, token_logprob

pytestmark = pytest.mark.unit


def logits_of(*probs: float) -> np.ndarray:
    return np.log(np.array(probs, dtype=np.float32))


def draws(logits: np.ndarray, params: SamplingParams, n: int = 4000) -> Counter[int]:
    rng = make_generator(7, 0)
    return Counter(choose(logits, params, rng) for _ in range(n))


def test_temperature_zero_and_top_p_zero_are_greedy() -> None:
    row = logits_of(0.2, 0.5, 0.3)
    assert choose(row, SamplingParams(max_tokens=1, temperature=0), make_generator(None, 0)) == 1
    assert set(draws(row, SamplingParams(max_tokens=1, temperature=1.0, top_p=0.0))) == {1}


def test_sampling_follows_the_distribution_and_top_p_cuts_it() -> None:
    row = logits_of(0.6, 0.3, 0.1)
    full = draws(row, SamplingParams(max_tokens=1, temperature=1.0))
    assert abs(full[0] / 4000 - 0.6) < 0.03 and abs(full[2] / 4000 - 0.1) < 0.02
    # top_p 0.7: the smallest prefix reaching 0.7 is {0, 1}, renormalised to 2:1
    cut = draws(row, SamplingParams(max_tokens=1, temperature=1.0, top_p=0.7))
    assert set(cut) == {0, 1} and abs(cut[0] / 4000 - 2 / 3) < 0.03
    # a low temperature sharpens: token 0 nearly always
    cold = draws(row, SamplingParams(max_tokens=1, temperature=0.1))
    assert cold[0] > 3950


def test_a_seed_reproduces_each_choice_and_choices_differ() -> None:
    row = np.zeros(1000, dtype=np.float32)
    params = SamplingParams(max_tokens=1, temperature=1.0)

    def run(seed: int, index: int) -> list[int]:
        rng = make_generator(seed, index)
        return [choose(row, params, rng) for _ in range(20)]

    assert run(5, 0) == run(5, 0)
    assert run(5, 0) != run(5, 1) and run(5, 0) != run(6, 0)


def test_bias_and_penalties_then_logprobs_of_the_model_itself() -> None:
    row = logits_of(0.5, 0.25, 0.25)
    params = SamplingParams(
        max_tokens=1, logit_bias={0: -100.0}, presence_penalty=0.5, frequency_penalty=0.25
    )
    adjusted = adjust_logits(row, params, Counter({1: 2}))
    assert adjusted[0] == pytest.approx(row[0] - 100)
    assert adjusted[1] == pytest.approx(row[1] - (2 * 0.25 + 0.5))
    assert adjusted[2] == row[2] and row[0] == pytest.approx(math.log(0.5))  # input untouched
    lp = token_logprob(row, 2, top_k=2)
    assert lp.logprob == pytest.approx(math.log(0.25), abs=1e-6)
    assert lp.top[0][0] == 0 and lp.top[0][1] == pytest.approx(math.log(0.5))
    assert len(lp.top) == 2 and lp.top[0][1] >= lp.top[1][1]
