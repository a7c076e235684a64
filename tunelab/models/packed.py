"""Linear layers on oneDNN's packed weight layout, for fp32 and bf16 decoding on a CPU.

A decode step multiplies a few rows (one per running sequence) by every weight of
the model. `F.linear` sends that to a general matrix product that handles such
skinny shapes poorly on a CPU: on the 2-core development machine (AMD EPYC, AVX2)
the linear layers of one SmolLM2-135M step took 54 ms for one row and 189 ms for
eight (11 GFLOP/s), so eight streams got ~3x one stream's tokens/s, not 8x. The same
products on weights reordered once into oneDNN's blocked layout (what PyTorch's own
compiler uses for CPU inference) took 43 ms and 68 ms (`benchmarks/decode_step.py`
and the note in docs/inference.md). The reorder is made for a batch of 8 rows; on
that machine it was also the fastest layout for 1, 2, 4 and 32 rows. bf16 weights are
packed too where oneDNN has bf16 kernels (CPUs with AVX512-BF16 or AMX, where the
server serves bf16): on a 2-core Xeon with AMX, one row times SmolLM2's vocabulary
projection took 7.1 ms through `F.linear` and 1.8 ms packed (docs/inference.md).

`pack_linears(model)` turns every fp32 (or bf16) `nn.Linear` on the CPU into a `PackedLinear`
(a subclass, so peft still wraps it as a linear layer). Its packed weight is made on
first use from whatever tensor `weight` is at that moment and kept on that tensor,
so a merged adapter copy swapped in as `weight` (tunelab.inference.merged) gets its
own packed form, freed with it; an in-place change of the weight (its version
counter moves) packs it again. The dense weight is kept: tied embeddings, peft and
merging read it. So the linear weights take twice their memory
(`TUNELAB_PACKED_WEIGHTS=false` turns this off). Products that need gradients, and
inputs of another dtype, run through `F.linear` as before. Outputs agree with
`F.linear` to float rounding (the order of the additions differs), not bit for bit.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROWS_HINT = 8  # the batch size the layout is chosen for (see above)
_dense = threading.local()  # .on: this thread's products run unpacked (see unpacked)


def available() -> bool:
    """Whether this PyTorch build has oneDNN's packed linear ops."""
    ops = torch.ops.mkldnn
    return (
        bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


class PackedLinear(nn.Linear):
    """An `nn.Linear` whose inference products use a oneDNN-packed copy of its weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        # A weight moved or cast since packing, or a product that needs gradients (the
        # packed op has no backward), runs as a plain linear layer.
        grad = torch.is_grad_enabled() and (w.requires_grad or x.requires_grad)
        if grad or getattr(_dense, "on", False) or not usable(x, w):
            return F.linear(x, w, self.bias)
        return linear(x, w, self.bias)


def linear(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, *, gelu: bool = False
) -> torch.Tensor:
    """x @ w.T + b on w's packed form (then erf GELU, fused into the product); the
    caller has checked `usable(x, w)`."""
    out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
        x, packed_weight(w), b, "gelu" if gelu else "none", [], "none" if gelu else ""
    )
    return out


@contextmanager
def unpacked() -> Iterator[None]:
    """Products of this thread's packed layers run as plain `F.linear` meanwhile, and
    pack nothing: for a one-off reference forward (tunelab.inference.forward checks
    its lean step against transformers) that must not leave packed copies behind."""
    _dense.on = True
    try:
        yield
    finally:
        _dense.on = False


def packed_weight(w: torch.Tensor) -> Any:
    """The packed form of `w`, made once and kept on the tensor itself."""
    version = -1 if w.is_inference() else w._version  # inference tensors keep no counter
    held = getattr(w, "_tunelab_packed", None)
    if held is not None and held[0] == version:
        return held[1]
    with torch.no_grad():
        packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), ROWS_HINT)
    w._tunelab_packed = (version, packed)  # type: ignore[attr-defined]
    return packed


def pack_linears(model: nn.Module) -> int:
    """Make every fp32 (or bf16, see `_packable`) CPU `nn.Linear` of `model` a
    `PackedLinear`; how many changed.

    Packing itself happens lazily, on each weight's first product, so loading stays
    as fast as before and weights that never run (an unused head) cost nothing.
    """
    if not available():
        return 0
    changed = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if type(module) is nn.Linear and weight is not None and _packable(weight):
            module.__class__ = PackedLinear
            changed += 1
    return changed


def usable(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether a product of input x and weight w can run on w's packed form."""
    return x.dtype == w.dtype and _packable(w) and x.device.type == "cpu"


def _packable(t: torch.Tensor) -> bool:
    if t.device.type != "cpu":
        return False
    return t.dtype == torch.float32 or (t.dtype == torch.bfloat16 and bf16_kernels())


@functools.cache
def bf16_kernels() -> bool:
    """Whether oneDNN has native bf16 kernels here (without them it would emulate)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def packed_bytes(model: nn.Module) -> int:
    """Bytes the packed copies of `model`'s `PackedLinear` weights take (or will)."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, PackedLinear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel() * module.weight.element_size()
    return total
