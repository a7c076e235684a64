"""LoRA adapters applied per row inside the lean forward: one batch mixes rows of
several adapters and of the base model at about the base model's speed.

peft runs such a batch with `adapter_names`: at every LoRA layer it finds each
adapter's rows, gathers them, runs that adapter's A and B and scatters the result
back, all on transformers' forward. For SmolLM2-135M (seven LoRA layers in each of
30 decoder layers) 4 base and 4 adapter rows decoded at half the rate of 8 base rows
(benchmarks/generation.py, "mixed"). Here the A matrices of every adapter in the
batch are stacked, per layer and per product the lean forward computes (q/k/v, o,
gate/up, down), into one matrix, and their B matrices, times each adapter's
scaling, into one block matrix, so that group's LoRA for the whole batch is

    delta = ((x @ A.T) * own_columns) @ B.T

where `own_columns` keeps, for each row, the columns of its own adapter (none for
a base row): two small products and a multiply per group, whatever the mix. Ranks
and target modules may differ between adapters. Computed in the adapter weights'
dtype (peft keeps them in fp32) and rounded as peft rounds: a batch of one
adapter's rows adds it to the base product and rounds once, as peft's active
adapter does; a mixed batch rounds the LoRA output to the product's dtype first,
as peft's mixed batch does. So in bf16 the lean forward gives peft's logits to
float summation order, and its first-use check (TorchForward) holds.

Only plain LoRA on the decoder layers' seven projections runs here (the adapters
`merged.mergeable_layers` accepts, no `modules_to_save`); a batch with any other
adapter runs on peft. Only the worker thread that owns the model calls into this.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from tunelab.inference.lean_forward import GATE_UP, QKV, inner
from tunelab.inference.merged import mergeable_layers

# Per decoder layer, the products the lean forward computes: (owner, group, members).
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("self_attn", "qkv", QKV),
    ("self_attn", "o", ("o_proj",)),
    ("mlp", "gate_up", GATE_UP),
    ("mlp", "down", ("down_proj",)),
)
STACKS_KEPT = 4  # adapter combinations whose stacked matrices are kept


@dataclass(frozen=True)
class _Piece:
    """One adapter's LoRA on one product group of one layer."""

    a: torch.Tensor  # (rank total, in): each member's A, stacked
    b: torch.Tensor  # (out total, rank total): each member's B x scaling, block-diagonal


@dataclass(frozen=True)
class _Stack:
    """Every adapter's pieces of one group, side by side."""

    a: torch.Tensor
    b: torch.Tensor
    owner: torch.Tensor  # (rank total,): which adapter (its slot) each column belongs to


Pieces = dict[tuple[int, str], _Piece]
Stacks = dict[tuple[int, str], _Stack]


class RowLora:
    """One batch's LoRA for `lean_forward.forward`: what each group's product gains,
    for every row, from its own adapter."""

    def __init__(self, stacks: Stacks, slots: torch.Tensor, mixed: bool) -> None:
        self._stacks = stacks
        self._mixed = mixed  # rows of several adapters, or of adapters and the base
        self._slots = slots[:, None, None]  # (rows, 1, 1): the adapter of each row, -1 none
        self._own: dict[int, torch.Tensor] = {}  # column owners (by id) -> row masks

    def delta(self, layer: int, group: str, x: torch.Tensor) -> torch.Tensor | None:
        """What the rows' adapters add to group `group` of layer `layer` on input x
        (rows, new, in): to be added to the product and the sum rounded to its dtype
        (see above for which rounding); None when no adapter changes that group."""
        stack = self._stacks.get((layer, group))
        if stack is None:
            return None
        own = self._own.get(id(stack.owner))
        if own is None:
            mine = stack.owner == self._slots.to(stack.owner.device)
            own = self._own[id(stack.owner)] = mine.to(stack.a.dtype)
        low = (x.to(stack.a.dtype) @ stack.a.T) * own
        out = low @ stack.b.T
        return out.to(x.dtype) if self._mixed else out


class RowAdapters:
    """Each attached adapter's pieces, and the stacked matrices of the adapter
    combinations batches used last."""

    def __init__(self) -> None:
        self._pieces: dict[str, Pieces | None] = {}  # None: not computable here
        self._stacks: OrderedDict[tuple[str, ...], Stacks] = OrderedDict()

    def batch(self, model: Any, keys: list[str | None]) -> RowLora | None:
        """The LoRA of a batch whose rows use `keys` (None: the base model), or None
        when some adapter of it is not plain LoRA on the seven projections."""
        combo = tuple(sorted({k for k in keys if k is not None}))
        for key in combo:
            if key not in self._pieces:
                self._pieces[key] = _pieces(model, key)
            if self._pieces[key] is None:
                return None
        stacks = self._stacks.get(combo)
        if stacks is None:
            stacks = self._stacks[combo] = _stack([self._pieces[k] or {} for k in combo])
            while len(self._stacks) > STACKS_KEPT:
                self._stacks.popitem(last=False)
        self._stacks.move_to_end(combo)
        slot = {k: i for i, k in enumerate(combo)}
        slots = torch.tensor([slot.get(k, -1) if k else -1 for k in keys])
        return RowLora(stacks, slots, mixed=len(set(keys)) > 1)

    def forget(self, key: str) -> None:
        """Drop what was computed from `key` (its adapter was detached)."""
        self._pieces.pop(key, None)
        for combo in [c for c in self._stacks if key in c]:
            del self._stacks[combo]


def _pieces(model: Any, key: str) -> Pieces | None:
    config = getattr(model, "peft_config", {}).get(key)
    lm = inner(model)
    layers = mergeable_layers(model, key)
    if config is None or getattr(config, "modules_to_save", None) or lm is None or not layers:
        return None
    pieces: Pieces = {}
    found = 0
    for i, layer in enumerate(lm.model.layers):
        for owner, group, names in GROUPS:
            members = [getattr(getattr(layer, owner), name) for name in names]
            piece = _piece(members, key)
            if piece is not None:
                pieces[i, group] = piece
                found += sum(key in getattr(m, "lora_A", {}) for m in members)
    # an adapter that also changes another layer (lm_head, say) is not computed here
    return pieces if found == len(layers) else None


def _piece(members: list[Any], key: str) -> _Piece | None:
    """`key`'s LoRA on these sibling layers, as one stacked A and one block B."""
    with_lora = [m for m in members if key in getattr(m, "lora_A", {})]
    if not with_lora or any(m.fan_in_fan_out for m in with_lora):
        return None
    first = with_lora[0].lora_A[key].weight
    dtype = first.dtype
    outs = [getattr(m, "base_layer", m).weight.shape[0] for m in members]
    ranks = [m.lora_A[key].weight.shape[0] for m in with_lora]
    block = torch.zeros(sum(outs), sum(ranks), dtype=dtype, device=first.device)
    row = col = 0
    for member, out in zip(members, outs, strict=True):
        if member in with_lora:  # its B, scaled, in its rows and its own columns
            b = member.lora_B[key].weight.detach().to(dtype) * member.scaling[key]
            block[row : row + out, col : col + b.shape[1]] = b
            col += b.shape[1]
        row += out
    a = torch.cat([m.lora_A[key].weight.detach().to(dtype) for m in with_lora])
    return _Piece(a, block)


def _stack(per_slot: list[Pieces]) -> Stacks:
    """The pieces of every adapter (slot i: per_slot[i]) side by side, per group.
    Groups whose columns belong to the same slots share one owner tensor, so a
    batch builds each row mask once."""
    owners: dict[tuple[int, ...], torch.Tensor] = {}
    stacks: Stacks = {}
    for where in sorted({w for pieces in per_slot for w in pieces}):
        slots = [(i, pieces[where]) for i, pieces in enumerate(per_slot) if where in pieces]
        layout = tuple(i for i, piece in slots for _ in range(piece.a.shape[0]))
        dtype, device = slots[0][1].a.dtype, slots[0][1].a.device
        owner = owners.setdefault(layout, torch.tensor(layout, device=device))
        stacks[where] = _Stack(
            torch.cat([piece.a.to(dtype) for _, piece in slots]),
            torch.cat([piece.b.to(dtype) for _, piece in slots], dim=1),
            owner,
        )
    return stacks
