"""LlamaCppForward against transformers on the same weights.

llama.cpp serves the embedded SmolLM2 GGUF converted to f32 (registry
llamacpp_weights "f32"): exactly the weights transformers dequantises from the
file, so the two must compute the same logits, row by row, through batched
prefill, shared prompts (n choices), dropped rows and LoRA adapters. This checks
what the ctypes layer feeds llama.cpp: token ids, positions, sequence ids."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from tunelab.inference.handle import AdapterRef, Generation, SamplingParams
from tunelab.inference.llamacpp import weights_file
from tunelab.inference.llamacpp_forward import LlamaCppForward
from tunelab.models.registry import SMOLLM2, ModelSpec, Registry

pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return replace(Registry.load().get(SMOLLM2), engine="llama.cpp", llamacpp_weights="f32")


@pytest.fixture(scope="module")
def forward(spec: ModelSpec, model_cache: Path) -> Iterator[LlamaCppForward]:
    f = LlamaCppForward(
        weights_file(spec, model_cache),
        max_rows=4,
        cache_tokens=1024,
        threads=2,
        adapter_capacity=2,
        cache_dir=model_cache,
    )
    yield f
    f.close()


@pytest.fixture(scope="module")
def hf(spec: ModelSpec, model_cache: Path) -> Any:
    from tunelab.models.loading import load_causal_lm

    return load_causal_lm(spec, model_cache)


def reference(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def assert_same(ours: torch.Tensor, want: torch.Tensor) -> None:
    cos = torch.nn.functional.cosine_similarity(ours.float(), want, dim=0)
    assert cos > 0.9995, float(cos)
    assert int(ours.argmax()) == int(want.argmax())


def gen(ids: list[int], adapter: AdapterRef | None = None) -> Generation:
    return Generation(
        ids, SamplingParams(max_tokens=8), stop_token_ids=frozenset(), adapter=adapter
    )


A = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11, 2]  # two prompts of different lengths
B = [1, 4093, 198, 19556, 28, 940, 30, 2, 198]


def test_batched_rows_match_transformers(forward: LlamaCppForward, hf: Any) -> None:
    logits, prompts = forward.prefill([gen(A), gen(B)])
    assert_same(logits[0], reference(hf, A))
    assert_same(logits[1], reference(hf, B))
    forward.add(prompts[0], 2)  # two choices share A's cache
    forward.add(prompts[1], 1)
    step = forward.step([100, 200, 300], [None, None, None])
    for row, ids in enumerate([[*A, 100], [*A, 200], [*B, 300]]):
        assert_same(step[row], reference(hf, ids))
    forward.keep([0, 2])  # the second choice of A ends; its sequence is freed
    step = forward.step([101, 301], [None, None])
    assert_same(step[0], reference(hf, [*A, 100, 101]))
    assert_same(step[1], reference(hf, [*B, 300, 301]))
    forward.keep([])
    # every sequence id is free again: four rows fit
    _, prompts = forward.prefill([gen(A)])
    forward.add(prompts[0], 4)
    forward.keep([])


@pytest.fixture(scope="module")
def adapter(
    spec: ModelSpec, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[AdapterRef, Any]:
    """A LoRA on all seven projections with random non-zero B, saved as a fine-tune's
    (on a model of its own: peft changes the model it wraps)."""
    from peft import LoraConfig, get_peft_model

    from tunelab.models.loading import load_causal_lm

    hf = load_causal_lm(spec, model_cache)
    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False)
    model = get_peft_model(hf, config).eval()
    path = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(path))
    return AdapterRef(key="a1", path=path), model


def test_lora_rows_match_peft_next_to_base_rows(
    forward: LlamaCppForward, hf: Any, adapter: tuple[AdapterRef, Any]
) -> None:
    ref, peft_model = adapter
    forward.attach(ref, set())
    logits, prompts = forward.prefill([gen(A, ref), gen(B)])
    with peft_model.disable_adapter():
        base_b = reference(peft_model, B)
    tuned_a = reference(peft_model, A)
    assert_same(logits[0], tuned_a)
    assert_same(logits[1], base_b)
    # the adapter matters: its logits are far from the base's
    with peft_model.disable_adapter():
        assert (
            float(torch.nn.functional.cosine_similarity(tuned_a, reference(peft_model, A), dim=0))
            < 0.99
        )
    forward.add(prompts[0], 1)
    forward.add(prompts[1], 1)
    step = forward.step([100, 300], ["a1", None])  # one step, two adapters: two decodes
    assert_same(step[0], reference(peft_model, [*A, 100]))
    with peft_model.disable_adapter():
        assert_same(step[1], reference(peft_model, [*B, 300]))
    forward.keep([])
