"""A peft LoRA adapter as the GGUF adapter file llama.cpp loads beside its base model.

llama.cpp (`llama_lora_adapter_init`) reads a GGUF file with general.type
"adapter", adapter.type "lora", adapter.lora.alpha, the base's architecture, and
for each adapted weight `<base tensor>.lora_a` (ggml ne [in, rank], i.e. numpy
[rank, in]: peft's lora_A) and `.lora_b` (ne [rank, out], numpy [out, rank]:
peft's lora_B). At run time it adds scale * alpha / rank * B @ A @ x to W @ x.

One catch: the HF -> GGUF conversion reorders the rows of llama's q and k
projections into llama.cpp's RoPE layout (per head, the first and second half of
the head dimension interleaved), and transformers restores the HF order when it
loads a GGUF, which is the model tunelab trains adapters on. The GGUF weight is
then P @ W for a row permutation P, so the update must be P @ B @ A: lora_b of
q/k gets the same row permutation, lora_a stays. Only the "llama" architecture
(the one transformers un-permutes this way) is converted; anything else, and any
adapter this file cannot express exactly, raises AdapterNotConvertible so the
engine serves it on transformers instead.

Files are written once into `cache_dir/llamacpp-lora/`, keyed by the adapter's
and the base file's path, size and mtime, to a temporary name then renamed, so a
crash never leaves a half-written adapter behind.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.models.cachefiles import sources_key, written

CONVERTER_VERSION = "1"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# peft target module -> llama.cpp tensor (blk.<i>.<name>.weight)
TENSORS = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
PEFT_KEY = re.compile(r"\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")
# peft config keys whose set values change the math beyond one B @ A per weight
# and one alpha / rank (fan_in_fan_out: GPT-2's transposed Conv1D weights).
UNSUPPORTED = (
    "use_dora",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "lora_bias",
    "fan_in_fan_out",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "alora_invocation_tokens",
    "use_qalora",
)


class AdapterNotConvertible(ValueError):
    """The adapter needs transformers: llama.cpp's LoRA cannot express it exactly."""


def rope_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Rows in HF order -> llama.cpp's order: per head, (2, half) becomes (half, 2)."""
    half = rows.shape[0] // n_head // 2
    return rows.reshape(n_head, 2, half, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _check_config(config: dict[str, Any]) -> tuple[int, float]:
    """(rank, adapter.lora.alpha) of the config (llama.cpp scales by alpha / rank)."""
    if config.get("peft_type") != "LORA":
        raise AdapterNotConvertible(f"peft_type {config.get('peft_type')!r} is not LoRA")
    if config.get("bias", "none") != "none":
        raise AdapterNotConvertible(f"bias {config['bias']!r}: llama.cpp LoRA has no bias terms")
    for key in UNSUPPORTED:
        if config.get(key):
            raise AdapterNotConvertible(f"{key}={config[key]!r} has no llama.cpp LoRA equivalent")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    # rsLoRA scales by alpha / sqrt(r): the same scale as alpha * sqrt(r) over r.
    return rank, alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def _base_layout(base_gguf: Path) -> tuple[str, dict[str, tuple[int, ...]], int, int]:
    """(architecture, {tensor name: ne}, n_head, n_head_kv) of the base GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(base_gguf)

    def field(key: str) -> Any:
        found = reader.fields.get(key)
        if found is None:
            raise AdapterNotConvertible(f"the base GGUF has no {key}")
        return found.parts[found.data[0]]

    arch = bytes(field("general.architecture")).decode()
    if arch != "llama":
        raise AdapterNotConvertible(f"architecture {arch!r}: only llama adapters are converted")
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    n_head = int(field(f"{arch}.attention.head_count")[0])
    kv = reader.fields.get(f"{arch}.attention.head_count_kv")
    return arch, shapes, n_head, int(kv.parts[kv.data[0]][0]) if kv is not None else n_head


def _lora_pairs(weights: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{(layer, module) as 'blk.<i>.<tensor>': {'A': ..., 'B': ...}} from peft's keys."""
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        match = PEFT_KEY.search(key)
        if match is None or match[2] not in TENSORS:
            raise AdapterNotConvertible(f"adapter weight {key!r} is not a llama.cpp LoRA target")
        pairs.setdefault(f"blk.{match[1]}.{TENSORS[match[2]]}", {})[match[3]] = value
    if not pairs:
        raise AdapterNotConvertible("the adapter has no LoRA weights")
    return pairs


def gguf_lora(adapter_dir: Path, base_gguf: Path, cache_dir: Path) -> Path:
    """The path of `adapter_dir`'s adapter as a llama.cpp GGUF LoRA over `base_gguf`."""
    files = [adapter_dir / name for name in ADAPTER_FILES]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise AdapterNotConvertible(f"{adapter_dir} has no {', '.join(missing)}")
    key = sources_key(*files, base_gguf, salt=CONVERTER_VERSION)
    target = cache_dir / "llamacpp-lora" / f"{key}-{adapter_dir.name}.gguf"
    if target.exists():
        return target
    rank, alpha = _check_config(json.loads(files[0].read_text()))
    from gguf import GGUFWriter
    from safetensors.torch import load_file

    weights = {k: v.float().numpy() for k, v in load_file(files[1]).items()}
    pairs = _lora_pairs(weights)
    arch, shapes, n_head, n_head_kv = _base_layout(base_gguf)
    tensors = _tensors(pairs, shapes, rank, n_head, n_head_kv)
    with written(target) as temp:
        writer = GGUFWriter(temp, arch)
        try:
            writer.add_type("adapter")
            writer.add_string("adapter.type", "lora")
            writer.add_float32("adapter.lora.alpha", alpha)
            for name, data in tensors:
                writer.add_tensor(name, data)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return target


def _tensors(
    pairs: dict[str, dict[str, np.ndarray]],
    shapes: dict[str, tuple[int, ...]],
    rank: int,
    n_head: int,
    n_head_kv: int,
) -> list[tuple[str, np.ndarray]]:
    """(name, f32 data) of every lora_a / lora_b, checked against the base's tensors and
    with q and k's lora_b rows in llama.cpp's RoPE order."""
    out: list[tuple[str, np.ndarray]] = []
    for name, pair in sorted(pairs.items()):
        a, b = pair.get("A"), pair.get("B")
        base = shapes.get(f"{name}.weight")
        if a is None or b is None or base is None:
            raise AdapterNotConvertible(f"{name}: no base tensor or an incomplete A/B pair")
        # ggml ne [in, out] vs numpy A [rank, in], B [out, rank]; llama.cpp takes
        # the rank it divides alpha by from the tensors, peft from the config.
        if (a.shape[1], b.shape[0]) != base[:2] or not a.shape[0] == b.shape[1] == rank:
            raise AdapterNotConvertible(f"{name}: A{a.shape} B{b.shape} vs base ne {base}")
        if name.endswith(".attn_q"):
            b = rope_permute(b, n_head)
        elif name.endswith(".attn_k"):
            b = rope_permute(b, n_head_kv)
        out.append((f"{name}.weight.lora_a", np.ascontiguousarray(a, np.float32)))
        out.append((f"{name}.weight.lora_b", np.ascontiguousarray(b, np.float32)))
    return out
