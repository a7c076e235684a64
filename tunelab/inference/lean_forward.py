"""A forward of a Llama-family model without transformers' per-layer machinery.

Serving runs the model on small inputs: a prefill of a few prompts, then decode
steps that feed one token per row. In transformers' forward the work besides the
matrix products is about 120 small operations and a stack of Python wrappers per
layer (mask building, output capture, cache objects, deprecation shims); for
SmolLM2-135M on the 2-core development machine that was ~45 of a one-row step's
~100 ms, the same inside `generate`. `forward` reads the same modules' weights and
computes the same function with ~25 operations per layer: rotary embeddings from
the model's own rotary module (so every rope variant transformers implements stays
right), RMS norms as one fused op, one scaled-dot-product attention call per layer
over the batch's cache, and q/k/v and gate/up as one packed product each.

It covers the architectures whose decoder layer is exactly "pre-norm attention
with rotary embeddings, then a gated SiLU MLP" (`SUPPORTED`), and the worker uses
it for base rows, one adapter's merged weights, and rows of plain LoRA adapters on
the seven projections, any mix of them per row (tunelab.inference.row_lora);
everything else runs transformers' forward. `TorchForward` checks it
against transformers' forward on its first prefill and first step and falls back
for good if they disagree, so an unexpected variant costs speed, never correctness.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.models.packed import PackedLinear, packed_weight, usable

if TYPE_CHECKING:
    from tunelab.inference.row_lora import RowLora

Layers = list[tuple[torch.Tensor, torch.Tensor]]
# (layer, new keys, new values) -> that layer's whole keys and values (KVBatch.grow)
Grow = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# config.model_type values whose decoder layer is the plain Llama one (Qwen2 adds
# q/k/v biases, which the linear layers carry; Mistral and Qwen2 qualify only
# without a sliding window, checked below).
SUPPORTED = frozenset({"llama", "mistral", "qwen2"})


def _plain(module: nn.Module) -> nn.Module:
    """The module peft wraps (a LoRA layer's base layer, a saved module's original),
    for use while adapter layers are switched off."""
    for name in ("base_layer", "original_module"):
        inner = getattr(module, name, None)
        if isinstance(inner, nn.Module):
            return inner
    return module


def supports(model: Any) -> bool:
    """Whether `model` (peft-wrapped or not) is an architecture `forward` computes."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED:
        return False
    if getattr(config, "hidden_act", None) != "silu":
        return False
    if getattr(config, "use_sliding_window", False) or (
        config.model_type == "mistral" and getattr(config, "sliding_window", None)
    ):
        return False
    if getattr(config, "pretraining_tp", 1) != 1:
        return False
    return inner(model) is not None


def inner(model: Any) -> Any:
    """The causal LM under peft's wrappers, if it has the modules used here."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if body is None or not all(hasattr(body, n) for n in needed):
        return None
    return base


class _Fused(NamedTuple):
    """Sibling linear layers that read the same input (q/k/v, gate/up) as one packed
    product: one call instead of three (two), and a wider product that a skinny
    decode batch runs faster (SmolLM2's q/k/v for one row: 214 vs 353 us)."""

    # Each member's weight (weakly: a swapped-out merged copy must be freed) and its
    # version. Not its id(): a freed merged copy's address is reused by the next
    # adapter's copy, and a fused form keyed by ids then served one adapter's
    # gate/up products with another's (the first member, gate, is the base's).
    key: tuple[tuple[weakref.ref[torch.Tensor], int], ...]
    weight: Any  # oneDNN-packed concatenation
    bias: torch.Tensor | None
    sizes: list[int]


def _version(w: torch.Tensor) -> int:
    return -1 if w.is_inference() else w._version


def _products(
    owner: nn.Module,
    names: tuple[str, ...],
    x: torch.Tensor,
    fuse: bool,
    delta: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Each named linear layer of `owner` applied to x, plus its share of `delta`
    (the rows' LoRA, all members side by side): one fused product where every
    member is a packed layer (and `fuse`), else one product each.

    The fused weight is kept on the first member's weight tensor, like a packed
    weight (tunelab.models.packed): a merged adapter copy swapped in as the
    members' weights gets a fused form of its own, freed with that copy."""
    members = _packed(owner, names) if fuse else None
    if members is None or not all(usable(x, m.weight) for m in members):
        outs = [_plain(getattr(owner, n))(x) for n in names]
        if delta is None:
            return outs
        parts = delta.split_with_sizes([o.shape[-1] for o in outs], dim=-1)
        return [(o + d).to(o.dtype) for o, d in zip(outs, parts, strict=True)]
    weights = [m.weight for m in members]
    held: _Fused | None = getattr(weights[0], "_tunelab_fused", None)
    if held is None or not _current(held, weights):
        key = tuple((weakref.ref(w), _version(w)) for w in weights)
        held = _fuse(weights, [m.bias for m in members], key)
        weights[0]._tunelab_fused = held  # type: ignore[attr-defined]
    out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
        x, held.weight, held.bias, "none", [], ""
    )
    if delta is not None:  # rounded as peft rounds it (tunelab.inference.row_lora)
        out = (out + delta).to(out.dtype)
    return list(out.split_with_sizes(held.sizes, dim=-1))


def _current(held: _Fused, weights: list[torch.Tensor]) -> bool:
    """Whether `held` was fused from exactly these weight tensors, unchanged since."""
    return len(held.key) == len(weights) and all(
        ref() is w and version == _version(w)
        for (ref, version), w in zip(held.key, weights, strict=True)
    )


def _fuse(
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    key: tuple[tuple[weakref.ref[torch.Tensor], int], ...],
) -> _Fused:
    with torch.no_grad():
        bias = None
        if any(b is not None for b in biases):
            bias = torch.cat(
                [
                    b if b is not None else w.new_zeros(w.shape[0])
                    for b, w in zip(biases, weights, strict=True)
                ]
            )
        packed = packed_weight(torch.cat(weights))
    return _Fused(key, packed, bias, [w.shape[0] for w in weights])


def _packed(owner: nn.Module, names: tuple[str, ...]) -> list[PackedLinear] | None:
    """The named layers of `owner`, if every one is a packed linear layer."""
    members = [_plain(getattr(owner, n)) for n in names]
    packed = [m for m in members if isinstance(m, PackedLinear)]
    return packed if len(packed) == len(members) else None


QKV = ("q_proj", "k_proj", "v_proj")
GATE_UP = ("gate_proj", "up_proj")


def _norm(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    eps: Any = getattr(module, "variance_epsilon", None) or getattr(module, "eps", 1e-6)
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, float(eps))
    # Half precision as transformers' Llama norm computes it: normalised in fp32,
    # rounded to x's dtype, then scaled by the weight in that dtype.
    normed = F.rms_norm(x.float(), (x.shape[-1],), None, float(eps)).to(x.dtype)
    return weight * normed


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _attention_mask(mask: torch.Tensor, new: int) -> torch.Tensor | None:
    """The boolean mask for `new` queries over mask's columns (the last `new` are the
    queries' own): causal, hiding left padding. A query on a padding column sees
    itself, so no row is fully masked (its output is never read). None where no mask
    is needed: one new token per row without padding, or a prefill (no cache) without
    padding, which `_attention` runs as plainly causal."""
    if bool(mask.all()) and (new == 1 or mask.shape[1] == new):
        return None
    keys = mask.bool()[:, None, None, :]
    if new == 1:
        return keys
    width = mask.shape[1]
    query_at = torch.arange(width - new, width)[:, None]
    column = torch.arange(width)[None, :]
    return (keys & (column <= query_at)) | (column == query_at)


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """Attention of q (rows, heads, new, dim) over k and v (rows, kv heads, length, dim).

    With grouped-query attention and one new token per row (a decode step), the
    query heads that share a kv head (heads h*g .. h*g+g-1, as transformers repeats
    them) attend as that kv head's g queries: a plain attention over the cache as it
    is. SDPA's enable_gqa repeats the keys and values instead, a copy of the whole
    cache per layer per step: at 8 rows of 1,000 cached tokens (SmolLM2, bf16) it took
    ~90 ms of attention per step against ~12 ms this way. A prefill's queries have
    causal masks of their own and keep enable_gqa; without padding (mask None) SDPA's
    own causal form is used, which skips the masked half: a 1,000-token prompt's
    attention took ~290 ms over 30 layers against ~435 ms with the same mask spelled out.
    """
    rows, heads, new, dim = q.shape
    kv_heads = k.shape[1]
    if heads == kv_heads or new > 1:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scale, enable_gqa=heads != kv_heads,
            is_causal=mask is None and new > 1,
        )  # fmt: skip
    grouped = q.reshape(rows, kv_heads, heads // kv_heads, dim)
    out = F.scaled_dot_product_attention(grouped, k, v, attn_mask=mask, scale=scale)
    return out.reshape(rows, heads, 1, dim)


def forward(
    model: Any,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    cache: Layers | None,
    *,
    fuse: bool = True,
    lora: RowLora | None = None,
    grow: Grow | None = None,
) -> tuple[torch.Tensor, Layers]:
    """Logits after each row's last new token, and each layer's (keys, values) grown
    by the new tokens.

    tokens (rows, new): one per row for a decode step, a left-padded prompt batch for
    a prefill; mask (rows, length + new), 0 on left padding; positions (rows, new);
    cache: per layer (rows, kv heads, length, head dim), as KVBatch holds it, or None
    (a prefill). fuse: run sibling products fused (see _products). lora: what each
    row's adapter adds to the products (tunelab.inference.row_lora), None for none.
    grow: appends a layer's new keys and values to its cache in place
    (`KVBatch.grow`); None: the cache is left as it is and the grown one is a copy.
    """

    def delta(layer: int, group: str, x: torch.Tensor) -> torch.Tensor | None:
        return None if lora is None else lora.delta(layer, group, x)

    lm = inner(model)
    body = lm.model
    config = lm.config
    rows, new = tokens.shape
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    attn_mask = _attention_mask(mask, new)
    h = _plain(body.embed_tokens)(tokens)
    cos, sin = body.rotary_emb(h, position_ids=positions)
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    grown: Layers = []
    for i, layer in enumerate(body.layers):
        attn, mlp = layer.self_attn, layer.mlp
        x = _norm(h, _plain(layer.input_layernorm))
        q, k, v = _products(attn, QKV, x, fuse, delta(i, "qkv", x))
        q = q.reshape(rows, new, heads, head_dim).transpose(1, 2)
        k = _rope(k.reshape(rows, new, kv_heads, head_dim).transpose(1, 2), cos, sin)
        v = v.reshape(rows, new, kv_heads, head_dim).transpose(1, 2)
        if grow is not None:
            k, v = grow(i, k, v)
        elif cache is not None:
            k = torch.cat((cache[i][0], k), dim=2)
            v = torch.cat((cache[i][1], v), dim=2)
        grown.append((k, v))
        a = _attention(_rope(q, cos, sin), k, v, attn_mask, attn.scaling)
        a = a.transpose(1, 2).reshape(rows, new, heads * head_dim)
        (o,) = _products(attn, ("o_proj",), a, False, delta(i, "o", a))
        h = h + o
        x = _norm(h, _plain(layer.post_attention_layernorm))
        gate, up = _products(mlp, GATE_UP, x, fuse, delta(i, "gate_up", x))
        mixed = F.silu(gate) * up
        (down,) = _products(mlp, ("down_proj",), mixed, False, delta(i, "down", mixed))
        h = h + down
    logits: torch.Tensor = _plain(lm.lm_head)(_norm(h[:, -1:], _plain(body.norm)))
    return logits[:, -1], grown
