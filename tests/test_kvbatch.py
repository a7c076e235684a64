"""The batch's key/value cache (tunelab.inference.kvbatch): decode steps append in
place, into room the batch keeps, and the cache stays exactly what appending with
torch.cat would give through joins, leaves and steps grown by transformers."""

from __future__ import annotations

import pytest
import torch

from tunelab.inference.kvbatch import KVBatch

pytestmark = pytest.mark.unit

LAYERS, HEADS, DIM = 3, 2, 4


def prompt(length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(1, HEADS, length, DIM), torch.randn(1, HEADS, length, DIM))] * LAYERS


def test_steps_append_in_place_and_copy_only_when_the_room_runs_out() -> None:
    torch.manual_seed(0)
    kv = KVBatch()
    kv.add(prompt(5), 5, copies=2)
    want = [[k.clone(), v.clone()] for k, v in zip(kv.keys, kv.values, strict=True)]
    buffers = set()
    for step in range(300):
        mask, _, data = kv.step_inputs()
        grown = []
        for layer in range(LAYERS):
            new_k, new_v = torch.randn(2, HEADS, 1, DIM), torch.randn(2, HEADS, 1, DIM)
            want[layer][0] = torch.cat((want[layer][0], new_k), dim=2)
            want[layer][1] = torch.cat((want[layer][1], new_v), dim=2)
            grown.append(kv.grow(layer, new_k, new_v))
        # What a first-use check reads is untouched until the step is absorbed.
        assert all(k.shape[2] == 5 + step for k, _ in data)
        kv.absorb(grown, mask)
        for layer in range(LAYERS):
            assert torch.equal(kv.keys[layer], want[layer][0])
            assert torch.equal(kv.values[layer], want[layer][1])
        buffers.add(kv.keys[0].data_ptr())
    assert kv.length == 305
    # New buffers only when the room (at least 64 columns, a quarter of the length
    # from 256 on) ran out: at lengths 70, 135, 200, 265 and on the first step.
    assert len(buffers) == 5


def test_joins_leaves_and_transformers_steps_keep_the_cache_exact() -> None:
    torch.manual_seed(1)
    kv = KVBatch()
    kv.add(prompt(3), 3, copies=1)

    def step(in_place: bool) -> None:
        mask, _, data = kv.step_inputs()
        new = [(torch.randn(kv.rows, HEADS, 1, DIM), torch.randn(kv.rows, HEADS, 1, DIM))
               for _ in range(LAYERS)]  # fmt: skip
        want = [(torch.cat((k, n), 2), torch.cat((v, m), 2))
                for (k, v), (n, m) in zip(data, new, strict=True)]  # fmt: skip
        if in_place:
            kv.absorb([kv.grow(i, n, m) for i, (n, m) in enumerate(new)], mask)
        else:  # transformers' forward: new tensors, the batch's buffers are dropped
            kv.absorb([(k.clone(), v.clone()) for k, v in want], mask)
        for (k, v), (wk, wv) in zip(zip(kv.keys, kv.values, strict=True), want, strict=True):
            assert torch.equal(k, wk) and torch.equal(v, wv)

    for n in range(70):
        step(in_place=n % 7 != 3)
        if n == 10:
            kv.add(prompt(6), 6, copies=2)  # two rows join, left-padded to 14 columns
        if n == 40:
            kv.keep([1, 2])  # the first row leaves: the joined rows' padding is trimmed
    assert kv.rows == 2 and kv.length == 6 + 59
