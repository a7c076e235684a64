"""Examples -> packed micro-batches with no padding.

Every example is tokenized once (`encode_dataset`). An optimizer step takes
`batch_size` examples in a seeded order; they are packed end to end into rows of at
most `micro_batch_tokens` tokens. Position ids restart at 0 for each example, which
makes transformers build a block-diagonal causal mask, so packed examples never see
each other and no compute is spent on pad tokens.

Targets are pre-shifted per example (target[t] = label[t + 1]), so the last token of
one example is never trained to predict the first token of the next.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.data.encoding import IGNORE, encode_example
from tunelab.data.examples import iter_examples


@dataclass
class Sample:
    input_ids: list[int]
    targets: list[int]  # shifted labels, IGNORE where not trained

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.targets if t != IGNORE)


@dataclass
class Dataset:
    samples: list[Sample]
    n_truncated: int
    n_untrained: int  # examples with no trained token (all weight 0, or truncated away)

    @property
    def n_tokens(self) -> int:
        return sum(len(s.input_ids) for s in self.samples)


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [1, T]
    position_ids: torch.Tensor  # [1, T]
    targets: torch.Tensor  # [T]
    n_tokens: int
    n_targets: int


def encode_dataset(tokenizer: Any, path: Path, max_length: int) -> Dataset:
    samples, n_truncated, n_untrained = [], 0, 0
    for example in iter_examples(path):
        enc = encode_example(tokenizer, example, max_length=max_length)
        n_truncated += enc.truncated
        sample = Sample(enc.input_ids, [*enc.labels[1:], IGNORE])
        if sample.n_targets == 0:
            n_untrained += 1
        samples.append(sample)
    return Dataset(samples, n_truncated, n_untrained)


def epoch_steps(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The example indices of each step of one epoch: a fresh seeded shuffle per epoch."""
    order = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]


def pack(samples: list[Sample], micro_batch_tokens: int) -> list[MicroBatch]:
    """First-fit decreasing into rows of <= micro_batch_tokens; one row per micro-batch."""
    rows: list[list[Sample]] = []
    room: list[int] = []
    for s in sorted(samples, key=lambda s: len(s.input_ids), reverse=True):
        n = len(s.input_ids)
        for i, free in enumerate(room):
            if n <= free:
                rows[i].append(s)
                room[i] -= n
                break
        else:
            rows.append([s])
            room.append(micro_batch_tokens - n)
    return [_row(r) for r in rows]


def _row(samples: list[Sample]) -> MicroBatch:
    ids: list[int] = []
    pos: list[int] = []
    tgt: list[int] = []
    for s in samples:
        ids += s.input_ids
        pos += range(len(s.input_ids))
        tgt += s.targets
    n_targets = sum(1 for t in tgt if t != IGNORE)
    return MicroBatch(
        input_ids=torch.tensor([ids]),
        position_ids=torch.tensor([pos]),
        targets=torch.tensor(tgt),
        n_tokens=len(ids),
        n_targets=n_targets,
    )
