"""A batch of one adapter's rows runs on merged weights; the base weights never change.

In-process, on the tiny in-code chat model with random (non-zero) LoRA adapters:
what the serving worker's AdapterSet gives for base-only, single-adapter and mixed
batches, with merged copies on and off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunelab.inference.adapters import AdapterSet
from tunelab.inference.handle import AdapterRef

pytestmark = pytest.mark.unit

MiB = 2**20


def make_adapter(base_dir: Path, target: Path, seed: int, **lora: Any) -> AdapterRef:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False, **lora
    )
    get_peft_model(model, config).save_pretrained(str(target))
    return AdapterRef(key=target.name, path=target)


@pytest.fixture(scope="module")
def adapters(
    tiny_chat_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, AdapterRef]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": make_adapter(tiny_chat_dir, root / "a", 1),
        "b": make_adapter(tiny_chat_dir, root / "b", 2),
        "dora": make_adapter(tiny_chat_dir, root / "dora", 3, use_dora=True),
    }


def logits(aset: AdapterSet, keys: list[str | None], ids: Any) -> Any:
    import torch

    with torch.inference_mode():
        return aset.model(input_ids=ids, **aset.forward_kwargs(keys)).logits


def adapter_set(tiny_chat_dir: Path, refs: list[AdapterRef], limit: int) -> AdapterSet:
    from transformers import AutoModelForCausalLM

    aset = AdapterSet(AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir)), 8, limit)
    for ref in refs:
        aset.ensure(ref, set())
    return aset


def test_one_adapter_alone_runs_merged_and_gives_the_unmerged_answer(
    tiny_chat_dir: Path, adapters: dict[str, AdapterRef]
) -> None:
    import torch

    a, b = adapters["a"].key, adapters["b"].key
    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    unmerged = adapter_set(tiny_chat_dir, [adapters["a"], adapters["b"]], 0)
    merged = adapter_set(tiny_chat_dir, [adapters["a"], adapters["b"]], 1024 * MiB)
    weights = {n: p.clone() for n, p in merged.model.named_parameters() if "lora" not in n}

    base = logits(unmerged, [None, None], ids)
    want_a, want_b = logits(unmerged, [a, a], ids), logits(unmerged, [b, b], ids)
    assert not torch.allclose(base, want_a, atol=1e-3)  # the adapter changes the output

    assert torch.allclose(logits(merged, [a, a], ids), want_a, atol=1e-4)
    assert torch.allclose(logits(merged, [b, b], ids), want_b, atol=1e-4)
    assert merged.merged.built == 2
    assert torch.equal(logits(merged, [None, None], ids), base)  # the base bit for bit
    mixed = logits(merged, [a, None], ids)  # peft's per-row path, weights swapped back
    assert torch.allclose(mixed[0], want_a[0], atol=1e-4)
    assert torch.equal(mixed[1], base[1])
    assert torch.allclose(logits(merged, [a, a], ids), want_a, atol=1e-4)
    assert merged.merged.built == 2  # the copy was kept, not computed again
    merged.forward_kwargs([None])
    after = {n: p for n, p in merged.model.named_parameters() if "lora" not in n}
    assert all(torch.equal(after[n], w) for n, w in weights.items())  # never written to


def test_copies_past_the_limit_or_of_other_lora_variants_run_unmerged(
    tiny_chat_dir: Path, adapters: dict[str, AdapterRef]
) -> None:
    import torch

    a, dora = adapters["a"].key, adapters["dora"].key
    ids = torch.randint(3, 200, (1, 10), generator=torch.Generator().manual_seed(1))
    reference = adapter_set(tiny_chat_dir, [adapters["a"], adapters["dora"]], 0)
    small = adapter_set(tiny_chat_dir, [adapters["a"], adapters["dora"]], 1)  # one byte
    big = adapter_set(tiny_chat_dir, [adapters["a"], adapters["dora"]], 1024 * MiB)

    assert torch.allclose(logits(small, [a], ids), logits(reference, [a], ids), atol=1e-5)
    assert small.merged.built == 0
    want = logits(reference, [dora], ids)
    assert torch.allclose(logits(big, [dora], ids), want, atol=1e-5)  # DoRA: peft's path
    assert big.merged.built == 0
    assert torch.allclose(logits(big, [a], ids), logits(reference, [a], ids), atol=1e-4)
    assert big.merged.built == 1
