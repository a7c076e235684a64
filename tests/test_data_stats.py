"""Token statistics, the auto-epochs rule and loss-mask segments."""

from __future__ import annotations

from typing import Any

import pytest

from tunelab.data.stats import auto_n_epochs, mask_segments, percentile, token_stats
from tunelab.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("n", "epochs"),
    [
        (1, 25),
        (5, 20),
        (10, 10),
        (12, 8),
        (34, 3),
        (50, 3),
        (8333, 3),
        (8334, 2),
        (10_000, 2),
        (30_000, 1),
    ],
)
def test_auto_epochs_follow_openai_rule(n: int, epochs: int) -> None:
    assert auto_n_epochs(n) == epochs


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 11))
    assert (percentile(values, 0.9), percentile(values, 0.5), percentile([], 0.9)) == (9, 5, 0)


@pytest.fixture(scope="module")
def tokenizer(model_cache: Any) -> Any:
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import SMOLLM2, Registry

    return load_tokenizer(
        Registry.load().get(SMOLLM2), Settings(cache_dir=model_cache).model_cache_dir
    )


@pytest.mark.realmodel
def test_sampled_statistics_match_full_ones_on_uniform_data(tokenizer: Any) -> None:
    from tunelab.data.encoding import encode_example

    examples = [
        {
            "messages": [
                {"role": "user", "content": f"问题 {i % 10}"},
                {"role": "assistant", "content": f"回答 {i % 10}"},
            ]
        }
        for i in range(100)
    ]
    full = token_stats(tokenizer, examples, 100, context=20)
    sampled = token_stats(tokenizer, examples, 100, context=20, sample=10)
    assert len(full.tokens) == 100 and len(sampled.tokens) == 10
    lengths = [len(encode_example(tokenizer, ex).input_ids) for ex in examples]
    assert full.tokens == sorted(lengths) and full.n_truncated == sum(t > 20 for t in lengths)
    assert full.billed_tokens == sum(min(t, 20) for t in lengths) * auto_n_epochs(100)
    assert (sampled.billed_tokens, sampled.n_truncated) == (full.billed_tokens, full.n_truncated)
    assert "evenly spaced sample of 10" in sampled.lines("m")[0]


@pytest.mark.realmodel
def test_prompt_completion_mask_is_completion_plus_eos(tokenizer: Any) -> None:
    segments = mask_segments(tokenizer, {"prompt": "天空是什么颜色？ ->", "completion": " 蓝色\n"})
    assert segments == [("天空是什么颜色？ ->", False), (" 蓝色\n" + tokenizer.eos_token, True)]
