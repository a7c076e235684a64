"""The key/value cache of every sequence a worker is decoding, as one batch.

Sequences join at any step (continuous batching): a new prompt is prefilled on
its own, then its cache rows are left-padded to the batch's length (or the batch
to theirs) and appended; an attention mask hides the padding and explicit
position ids keep rotary embeddings right. Finished rows are dropped and any
columns that became padding for every row are trimmed, so a long-gone long
prompt does not keep costing attention time.

A decode step appends one column to every layer's keys and values. With
torch.cat that copies the whole cache twice per layer per step (read and
write), which at 8 rows of ~1000 tokens moves more bytes than the model's own
weights; `grow` instead writes the column into spare room at the end of a
buffer the batch keeps per layer (a quarter more than its length, at least
MIN_ROOM columns), so a step copies only when the room runs out. Joins and
leaves still copy (they change the rows) and start new buffers on the next step.
"""

from __future__ import annotations

from typing import Any

import torch


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Pad dimension -2 (keys/values) or -1 (mask) on the left with zeros."""
    if width == 0:
        return t
    shape = list(t.shape)
    dim = -2 if t.dim() == 4 else -1
    shape[dim] = width
    return torch.cat([t.new_zeros(shape), t], dim=dim)


MIN_ROOM = 64  # spare columns a new buffer gets at least


def _with_room(t: torch.Tensor, columns: int) -> torch.Tensor:
    """A buffer of `columns` columns (dimension 2) whose first ones hold t."""
    rows, heads, length, dim = t.shape
    buffer = t.new_empty(rows, heads, columns, dim)
    buffer[:, :, :length] = t
    return buffer


class KVBatch:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask = torch.zeros(0, 0, dtype=torch.long)
        self.positions = torch.zeros(0, dtype=torch.long)
        # Per layer, the (keys, values) buffers whose first columns self.keys[i] and
        # self.values[i] view, with room after them; None: the layer's tensors are
        # plain (just joined, trimmed, or grown by transformers' forward).
        self._buffers: list[tuple[torch.Tensor, torch.Tensor] | None] = []

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    def add(
        self, layers: list[tuple[torch.Tensor, torch.Tensor]], prompt_len: int, copies: int
    ) -> None:
        """Append `copies` rows that share one prefilled prompt's cache (one row per layer)."""
        if copies > 1:
            layers = [
                (k.expand(copies, -1, -1, -1), v.expand(copies, -1, -1, -1)) for k, v in layers
            ]
        new_mask = torch.ones(copies, prompt_len, dtype=torch.long)
        new_pos = torch.full((copies,), prompt_len, dtype=torch.long)
        self._buffers = [None] * len(layers)
        if self.rows == 0:
            self.keys = [k.contiguous() for k, _ in layers]
            self.values = [v.contiguous() for _, v in layers]
            self.mask, self.positions = new_mask, new_pos
            return
        width = max(self.length, prompt_len)
        pad_old, pad_new = width - self.length, width - prompt_len
        self.keys = [
            torch.cat([_left_pad(o, pad_old), _left_pad(n, pad_new)])
            for o, (n, _) in zip(self.keys, layers, strict=False)
        ]
        self.values = [
            torch.cat([_left_pad(o, pad_old), _left_pad(n, pad_new)])
            for o, (_, n) in zip(self.values, layers, strict=False)
        ]
        self.mask = torch.cat([_left_pad(self.mask, pad_old), _left_pad(new_mask, pad_new)])
        self.positions = torch.cat([self.positions, new_pos])

    def step_inputs(
        self,
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Attention mask (incl. the token about to be fed), position ids, cache data."""
        mask = torch.cat([self.mask, torch.ones(self.rows, 1, dtype=torch.long)], dim=1)
        return mask, self.positions[:, None], list(zip(self.keys, self.values, strict=False))

    def grow(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's keys and values with a step's (rows, heads, new, dim) appended:
        written into the room of the layer's buffers (made, with room, when there is
        none left), viewed up to the new length. The batch takes them in `absorb`;
        its own keys and values are unchanged until then."""
        past_k, past_v = self.keys[layer], self.values[layer]
        length = past_k.shape[2]
        end = length + keys.shape[2]
        held = self._buffers[layer]
        if held is None or held[0].shape[2] < end:
            columns = end + max(MIN_ROOM, length // 4)
            held = (_with_room(past_k, columns), _with_room(past_v, columns))
            self._buffers[layer] = held
        held[0][:, :, length:end] = keys
        held[1][:, :, length:end] = values
        return held[0][:, :, :end], held[1][:, :, :end]

    def absorb(self, cache: Any, mask: torch.Tensor) -> None:
        """Take the grown cache after a decode step: views of the buffers `grow` wrote
        (the lean forward), or new tensors (transformers' forward), whose layers then
        have no buffers until they grow again."""
        self.keys = [k for k, _, *_ in cache]
        self.values = [v for _, v, *_ in cache]
        self._buffers = [
            held if held is not None and k.data_ptr() == held[0].data_ptr() else None
            for held, k in zip(self._buffers, self.keys, strict=True)
        ]
        self.mask = mask
        self.positions = self.positions + 1

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows; trim columns that are now padding everywhere."""
        if len(rows) == self.rows:
            return
        if not rows:
            self._reset()
            return
        idx = torch.tensor(rows, dtype=torch.long)
        self.mask = self.mask[idx]
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else self.length
        self.mask = self.mask[:, start:]
        self.keys = [k[idx, :, start:] for k in self.keys]
        self.values = [v[idx, :, start:] for v in self.values]
        self._buffers = [None] * len(self.keys)
        self.positions = self.positions[idx]
