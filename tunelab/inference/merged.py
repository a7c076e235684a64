"""Merged copies of LoRA adapters' weights, swapped in for batches that use one alone.

peft runs an attached adapter unmerged: every LoRA layer computes base(x) plus
B(A(x)), three extra operations per layer at every decode step. On a CPU a decode
step of a small model is mostly per-operation overhead, so that cost SmolLM2-135M
~20% of its tokens/s (benchmarks/generation.py) for a rank that adds almost no
FLOPs. When a batch's rows all use one adapter, the worker instead points each
changed layer at a merged weight (base + the adapter's delta, computed once) and
runs with the adapter layers off: the base model's speed, the adapter's output.

The base weights themselves are never modified (merging into them in place and
unmerging after would drift them by rounding, and rows of the base or of other
adapters share them), so a merged copy costs the memory of the weights the adapter
changes. Copies are kept, least recently used first out, while they fit in
`limit_bytes` (settings.merged_adapter_memory_mb); an adapter that does not fit,
or that is not plain LoRA on linear layers (DoRA and other variants, a LoRA bias,
embedding LoRA, a weight shared with another module), runs unmerged as before.
Only the worker thread that owns the model calls into this class.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

# (layer whose weight is swapped, its base weight, the merged weight)
Swap = tuple[Any, Any, Any]


class MergedCopies:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(0, limit_bytes)
        self._copies: OrderedDict[str, list[Swap]] = OrderedDict()
        self._unmergeable: set[str] = set()
        self._swapped: list[Swap] = []
        self.built = 0  # merged copies computed (counted for tests and stats)

    def swap_in(self, model: Any, key: str) -> bool:
        """Point the layers `key` changes at its merged weights; False when it can not be."""
        self.swap_out()
        swaps = self._copy(model, key)
        if swaps is None:
            return False
        for layer, _, merged in swaps:
            layer._parameters["weight"] = merged
        self._swapped = swaps
        return True

    def swap_out(self) -> None:
        """Give every swapped layer its base weight back."""
        for layer, base, _ in self._swapped:
            layer._parameters["weight"] = base
        self._swapped = []

    def forget(self, key: str) -> None:
        """Drop `key`'s copy (its adapter was detached)."""
        if self._swapped and self._copies.get(key) is self._swapped:
            self.swap_out()
        self._copies.pop(key, None)
        self._unmergeable.discard(key)

    def _copy(self, model: Any, key: str) -> list[Swap] | None:
        if key in self._copies:
            self._copies.move_to_end(key)
            return self._copies[key]
        if key in self._unmergeable or self.limit == 0:
            return None
        layers = mergeable_layers(model, key) or []
        size = sum(_cost(layer.get_base_layer()) for layer in layers)
        if not layers or size > self.limit:
            self._unmergeable.add(key)
            return None
        while self._copies and self._held() + size > self.limit:
            self._copies.popitem(last=False)  # the least recently used
        import torch

        swaps: list[Swap] = []
        for layer in layers:
            base_layer = layer.get_base_layer()
            weight = base_layer.weight
            delta = layer.get_delta_weight(key).to(weight.dtype)
            merged = torch.nn.Parameter(weight + delta, requires_grad=False)
            swaps.append((base_layer, weight, merged))
        self._copies[key] = swaps
        self.built += 1
        return swaps

    def _held(self) -> int:
        """Bytes of the merged copies kept."""
        return sum(_cost(layer) for swaps in self._copies.values() for layer, *_ in swaps)


def mergeable_layers(model: Any, key: str) -> list[Any] | None:
    """The LoRA layers `key` changes, when all are plain LoRA on a linear layer whose
    weight no other module shares; None otherwise (or when it changes none)."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    layers = []
    for module in model.modules():
        if key in getattr(module, "lora_embedding_A", {}):
            return None
        if key not in getattr(module, "lora_A", {}):
            continue
        if not isinstance(module, LoraLinear) or key in module.lora_variant:
            return None
        if module.lora_bias.get(key) or uses[id(module.get_base_layer().weight)] > 1:
            return None
        layers.append(module)
    return layers or None


def _cost(base_layer: Any) -> int:
    """Bytes a merged copy of this layer's weight takes: twice on a packed layer,
    whose copy gets a packed form of its own (tunelab.models.packed), or its share
    of a fused one (q/k/v and gate/up in tunelab.inference.lean_forward)."""
    from tunelab.models.packed import PackedLinear

    weight = base_layer.weight
    copies = 2 if isinstance(base_layer, PackedLinear) else 1
    return int(weight.numel() * weight.element_size()) * copies
