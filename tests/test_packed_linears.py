"""fp32 and bf16 linear layers on oneDNN-packed weights (tunelab.models.packed).

What serving relies on: a packed layer gives F.linear's output (to float rounding)
for one row, a batch and a prompt; a model keeps its answers; peft still wraps the
layers, and a merged adapter copy swapped in as a layer's weight is the weight the
layer multiplies by (not a stale packed base); a weight changed in place is packed
again; products that need gradients still get them; the engine packs only when the
setting says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunelab.inference.adapters import AdapterSet
from tunelab.models import packed
from tunelab.models.packed import PackedLinear, pack_linears
from tunelab.settings import Settings

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not packed.available(), reason="this torch build has no oneDNN"),
]

MiB = 2**20


def packed_copy(linear: nn.Linear) -> nn.Linear:
    other = nn.Linear(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        dtype=linear.weight.dtype,
    )
    other.load_state_dict(linear.state_dict())
    assert pack_linears(other) == 1
    return other


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 96), (8, 96), (3, 17, 96)])
def test_a_packed_layer_gives_the_linear_output(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and not packed.bf16_kernels():
        pytest.skip("no oneDNN bf16 kernels on this CPU: bf16 layers stay unpacked")
    torch.manual_seed(0)
    plain = nn.Linear(96, 200).to(dtype)
    layer = packed_copy(plain)
    assert isinstance(layer, PackedLinear) and isinstance(layer, nn.Linear)
    x = torch.randn(*shape).to(dtype)
    with torch.inference_mode():
        got, want = layer(x), plain(x)
    assert got.shape == want.shape and got.dtype == dtype
    atol = 1e-5 if dtype == torch.float32 else 2 * 2**-7 * float(want.abs().max())
    assert torch.allclose(got.float(), want.float(), atol=atol)
    assert layer.weight._tunelab_packed is not None  # type: ignore[attr-defined]


def test_bf16_layers_are_packed_only_where_onednn_computes_bf16() -> None:
    # Elsewhere oneDNN would emulate bf16, slower than F.linear.
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8).to(torch.bfloat16))
    assert pack_linears(model) == 1 + int(packed.bf16_kernels())


def test_a_weight_changed_in_place_or_replaced_is_the_one_multiplied() -> None:
    torch.manual_seed(1)
    layer = packed_copy(nn.Linear(32, 48, bias=False))
    x = torch.randn(4, 32)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)  # in place: the version counter moves
        assert torch.allclose(layer(x), 2 * before, atol=1e-5)
        other = torch.randn(48, 32)
        layer._parameters["weight"] = nn.Parameter(other, requires_grad=False)  # a swap
        assert torch.allclose(layer(x), F.linear(x, other), atol=1e-5)


def test_products_that_need_gradients_still_get_them() -> None:
    torch.manual_seed(2)
    layer = packed_copy(nn.Linear(16, 8))
    x = torch.randn(5, 16)
    layer(x).sum().backward()
    assert layer.weight.grad is not None
    assert torch.allclose(layer.weight.grad, x.sum(0).expand(8, 16), atol=1e-5)


def test_a_packed_model_keeps_its_answers_and_adapters(tiny_chat_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir))
    linears = sum(type(m) is nn.Linear for m in model.modules())
    assert pack_linears(model) == linears > 0
    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(model(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-4)
        assert torch.equal(
            model.generate(ids, max_new_tokens=8, do_sample=False),
            plain.generate(ids, max_new_tokens=8, do_sample=False),
        )

    # A LoRA adapter, as the serving AdapterSet runs it: unmerged (peft's layers
    # around the packed ones) and merged (a copy swapped in as the packed layer's weight).
    torch.manual_seed(3)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter_dir = tmp_path / "adapter"
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir)), config)
    lora.save_pretrained(str(adapter_dir))
    from tunelab.inference.handle import AdapterRef

    ref = AdapterRef(key="a", path=adapter_dir)
    reference = AdapterSet(plain, 4, 0)
    reference.ensure(ref, set())
    unmerged = AdapterSet(model, 4, 0)
    unmerged.ensure(ref, set())

    def logits(aset: AdapterSet, keys: list[str | None]) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = aset.model(input_ids=ids, **aset.forward_kwargs(keys)).logits
            return out

    want = logits(reference, ["a", "a"])
    base = logits(reference, [None, None])
    assert not torch.allclose(want, base, atol=1e-3)  # the adapter changes the output
    assert torch.allclose(logits(unmerged, ["a", "a"]), want, atol=1e-4)

    merged_model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir))
    pack_linears(merged_model)
    merged = AdapterSet(merged_model, 4, 1024 * MiB)
    merged.ensure(ref, set())
    assert torch.allclose(logits(merged, [None, None]), base, atol=1e-4)  # base packed first
    assert torch.allclose(logits(merged, ["a", "a"]), want, atol=1e-4)
    assert merged.merged.built == 1
    assert torch.allclose(logits(merged, [None, None]), base, atol=1e-4)  # swapped back
    mixed = logits(merged, ["a", None])
    assert torch.allclose(mixed[0], want[0], atol=1e-4)
    assert torch.allclose(mixed[1], base[1], atol=1e-4)


def test_the_engine_packs_only_when_the_setting_says_so(
    tiny_chat_dir: Path, settings: Settings
) -> None:
    from tunelab.inference.engine import InferenceEngine
    from tunelab.models.registry import ModelSpec

    spec = ModelSpec(id="tiny", kind="chat", source=str(tiny_chat_dir), context_length=512)
    for on in (True, False):
        s = settings.model_copy(update={"packed_weights": on, "device": "cpu"})
        model = InferenceEngine(s)._load_model(spec)
        kinds = {type(m) for m in model.modules() if isinstance(m, nn.Linear)}
        assert kinds == ({PackedLinear} if on else {nn.Linear})
