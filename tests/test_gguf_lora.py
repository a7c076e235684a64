"""peft LoRA adapters -> llama.cpp GGUF adapter files (tunelab.models.gguf_lora).

A tiny llama base GGUF is written in code (the embedded SmolLM2's layout at toy
size: 4 query heads, 2 key/value heads) and a real peft adapter is saved over a
transformers model of the same config, with random non-zero lora_B. The
converted file is read back with gguf's reader: metadata, names, ggml shapes, the
data, and the q/k row order llama.cpp's RoPE expects. That llama.cpp computes the
same logits as transformers + peft with such a file is measured against the real
library elsewhere; here is what can be checked without it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tunelab.models.gguf_lora import TENSORS, AdapterNotConvertible, gguf_lora

pytestmark = pytest.mark.unit

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, RANK, ALPHA = 64, 128, 2, 4, 2, 4, 8
HEAD_DIM = HIDDEN // HEADS


def out_in(tensor: str) -> tuple[int, int]:
    """(out, in) features of a llama.cpp block weight of the tiny model."""
    kv = KV_HEADS * HEAD_DIM
    return {
        "attn_q": (HIDDEN, HIDDEN),
        "attn_k": (kv, HIDDEN),
        "attn_v": (kv, HIDDEN),
        "attn_output": (HIDDEN, HIDDEN),
        "ffn_gate": (FFN, HIDDEN),
        "ffn_up": (FFN, HIDDEN),
        "ffn_down": (HIDDEN, FFN),
    }[tensor]


def write_base(path: Path, arch: str = "llama") -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(path, arch)
    writer.add_uint32(f"{arch}.block_count", LAYERS)
    writer.add_uint32(f"{arch}.attention.head_count", HEADS)
    writer.add_uint32(f"{arch}.attention.head_count_kv", KV_HEADS)
    for layer in range(LAYERS):
        for tensor in TENSORS.values():
            writer.add_tensor(f"blk.{layer}.{tensor}.weight", np.zeros(out_in(tensor), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_adapter(target: Path, modules: list[str]) -> dict[str, Any]:
    """A peft adapter over a tiny transformers llama; returns its state dict (numpy)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
    )
    lora = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=modules, task_type="CAUSAL_LM")
    model = get_peft_model(LlamaForCausalLM(config), lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    model.save_pretrained(str(target))
    from safetensors.numpy import load_file

    return load_file(target / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("gguf_lora")
    weights = write_adapter(root / "adapter", list(TENSORS))
    return {"root": root, "base": write_base(root / "base.gguf"), "weights": weights}


def peft_weight(weights: dict[str, Any], layer: int, module: str, ab: str) -> Any:
    part = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    return weights[f"base_model.model.model.layers.{layer}.{part}.{module}.lora_{ab}.weight"]


def test_metadata_names_shapes_and_data(work: dict[str, Any], tmp_path: Path) -> None:
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    reader = GGUFReader(gguf_lora(work["root"] / "adapter", work["base"], tmp_path))

    def text(key: str) -> str:
        field = reader.fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    assert (text("general.type"), text("adapter.type")) == ("adapter", "lora")
    assert text("general.architecture") == "llama"
    alpha = reader.fields["adapter.lora.alpha"]
    assert float(alpha.parts[alpha.data[0]][0]) == ALPHA
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == LAYERS * len(TENSORS) * 2
    for layer in range(LAYERS):
        for module, name in TENSORS.items():
            out, inp = out_in(name)
            a = tensors[f"blk.{layer}.{name}.weight.lora_a"]
            b = tensors[f"blk.{layer}.{name}.weight.lora_b"]
            # ggml order, as llama_lora_adapter_init checks it against the base weight
            assert (list(a.shape), list(b.shape)) == ([inp, RANK], [RANK, out])
            assert a.tensor_type.name == b.tensor_type.name == "F32"
            assert np.array_equal(a.data, peft_weight(work["weights"], layer, module, "A"))
            peft_b = peft_weight(work["weights"], layer, module, "B")
            if module not in ("q_proj", "k_proj"):
                assert np.array_equal(b.data, peft_b)
                continue
            # q/k rows in llama.cpp's RoPE order: within each head, llama.cpp rotates
            # adjacent rows (2i, 2i+1), transformers rows i and i + head_dim / 2.
            assert not np.array_equal(b.data, peft_b)
            heads, half = out // HEAD_DIM, HEAD_DIM // 2
            for h in range(heads):
                for i in range(half):
                    row = h * HEAD_DIM
                    assert np.array_equal(b.data[row + 2 * i], peft_b[row + i])
                    assert np.array_equal(b.data[row + 2 * i + 1], peft_b[row + half + i])
            # and transformers' own GGUF loader restores peft's order from it
            processor = LlamaTensorProcessor()  # type: ignore[no-untyped-call]
            restored = processor._reverse_permute_weights(b.data, HEADS, heads)
            assert np.array_equal(restored, peft_b)


def test_written_once_and_keyed_by_the_adapter_files(work: dict[str, Any], tmp_path: Path) -> None:
    adapter = work["root"] / "adapter"
    first = gguf_lora(adapter, work["base"], tmp_path)
    written = first.stat().st_mtime_ns
    assert gguf_lora(adapter, work["base"], tmp_path) == first
    assert first.stat().st_mtime_ns == written
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp files left
    changed = tmp_path / "changed"
    changed.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (changed / name).write_bytes((adapter / name).read_bytes())
    config = changed / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "use_rslora": True}))
    other = gguf_lora(changed, work["base"], tmp_path)
    assert other != first
    from gguf import GGUFReader

    alpha = GGUFReader(other).fields["adapter.lora.alpha"]
    # rsLoRA scales by alpha / sqrt(r); llama.cpp divides the stored alpha by r
    assert float(alpha.parts[alpha.data[0]][0]) == pytest.approx(ALPHA * math.sqrt(RANK))


def copy_with_config(work: dict[str, Any], target: Path, **changes: Any) -> Path:
    target.mkdir()
    source = work["root"] / "adapter"
    os.symlink(source / "adapter_model.safetensors", target / "adapter_model.safetensors")
    config = json.loads((source / "adapter_config.json").read_text())
    (target / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return target


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"use_dora": True}, "use_dora"),
        ({"bias": "lora_only"}, "bias"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"rank_pattern": {"q_proj": 2}}, "rank_pattern"),
        ({"alpha_pattern": {"q_proj": 2}}, "alpha_pattern"),
        ({"peft_type": "IA3"}, "not LoRA"),
        # a config whose rank is not the tensors' would be scaled wrongly
        ({"r": RANK * 2}, r"A\(4, 64\)"),
    ],
)
def test_refuses_configs_it_cannot_express(
    work: dict[str, Any], tmp_path: Path, changes: dict[str, Any], says: str
) -> None:
    adapter = copy_with_config(work, tmp_path / "adapter", **changes)
    with pytest.raises(AdapterNotConvertible, match=says):
        gguf_lora(adapter, work["base"], tmp_path / "cache")
    assert not (tmp_path / "cache" / "llamacpp-lora").exists() or not any(
        (tmp_path / "cache" / "llamacpp-lora").iterdir()
    )


def test_refuses_embeddings_other_architectures_and_missing_files(
    work: dict[str, Any], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    write_adapter(tmp_path / "embed", ["q_proj", "embed_tokens"])
    with pytest.raises(AdapterNotConvertible, match="embed_tokens"):
        gguf_lora(tmp_path / "embed", work["base"], cache)
    qwen = write_base(tmp_path / "qwen.gguf", arch="qwen2")
    with pytest.raises(AdapterNotConvertible, match="qwen2"):
        gguf_lora(work["root"] / "adapter", qwen, cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterNotConvertible, match=r"adapter_config\.json"):
        gguf_lora(tmp_path / "empty", work["base"], cache)
    written = cache / "llamacpp-lora"
    assert not written.exists() or not any(written.iterdir())
