"""Direct Preference Optimization: the pieces the training loop uses for method "dpo".

A preference pair is one input conversation with a preferred and a non-preferred
answer. Each answer is encoded as a chat example whose only trained tokens are the
answer's (earlier assistant turns carry weight 0), so a sequence's log-probability
is the sum over exactly those tokens.

    loss = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x))
                                - (log pi(y_l|x) - log ref(y_l|x))))

(Rafailov et al., 2023). The reference log-probabilities are those of the model as
training starts — for a new LoRA adapter, the frozen base with the adapter disabled;
when continuing a fine-tune, that fine-tune — computed once before the first step and
saved with the job (`reference_logps.pt`), so no second model is held in memory and a
resumed job keeps the same reference. The implicit rewards beta * (log pi - log ref)
of the two answers give the reported reward margin and accuracy (the fraction of
pairs whose preferred answer is rewarded more).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tunelab.data.encoding import IGNORE, encode_chat
from tunelab.data.examples import iter_examples
from tunelab.training.data import Sample

REFERENCE_FILE = "reference_logps.pt"


@dataclass
class Pair:
    chosen: Sample
    rejected: Sample
    truncated: bool = False


@dataclass(frozen=True)
class PairStats:
    """Means over a set of pairs."""

    loss: float
    chosen_reward: float
    rejected_reward: float
    margin: float
    accuracy: float


def _answer_sample(
    tokenizer: Any, messages: list[dict[str, Any]], answer: dict[str, Any], max_length: int
) -> tuple[Sample, bool]:
    context = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in messages]
    enc = encode_chat(tokenizer, [*context, answer], max_length=max_length)
    return Sample(enc.input_ids, [*enc.labels[1:], IGNORE]), enc.truncated


def encode_pairs(tokenizer: Any, path: Path, max_length: int) -> list[Pair]:
    """Every preference example of the file, both answers encoded."""
    pairs = []
    for ex in iter_examples(path):
        if "preferred_output" not in ex:
            raise ValueError("a preference (DPO) job needs input/preferred_output lines")
        messages = ex["input"]["messages"]
        chosen, t1 = _answer_sample(tokenizer, messages, ex["preferred_output"][0], max_length)
        rejected, t2 = _answer_sample(
            tokenizer, messages, ex["non_preferred_output"][0], max_length
        )
        pairs.append(Pair(chosen, rejected, t1 or t2))
    return pairs


def _rows(samples: list[Sample], budget: int) -> Iterator[list[int]]:
    """Consecutive sample indices packed into rows of at most `budget` tokens."""
    row: list[int] = []
    used = 0
    for i, s in enumerate(samples):
        if row and used + len(s.input_ids) > budget:
            yield row
            row, used = [], 0
        row.append(i)
        used += len(s.input_ids)
    if row:
        yield row


def sequence_logps(
    model: Any, samples: list[Sample], micro_batch_tokens: int, device: str, bf16: bool
) -> torch.Tensor:
    """log p(trained tokens | the rest) summed per sample, in order (with gradients).

    Samples are packed end to end into rows (position ids restart per sample, so
    attention stays within each sample, as in training), and each row's per-token
    log-probabilities are summed back per sample through a segment index.
    """
    sums: list[torch.Tensor] = []
    for row in _rows(samples, micro_batch_tokens):
        ids: list[int] = []
        pos: list[int] = []
        tgt: list[int] = []
        owner: list[int] = []
        for k, i in enumerate(row):
            s = samples[i]
            ids += s.input_ids
            pos += range(len(s.input_ids))
            tgt += s.targets
            owner += [k] * len(s.input_ids)
        targets = torch.tensor(tgt)
        keep = (targets != IGNORE).nonzero().squeeze(-1)
        row_sums = torch.zeros(len(row), device=device)
        if keep.numel() > 0:
            with torch.autocast(
                device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16
            ):
                logits = model(
                    input_ids=torch.tensor([ids], device=device),
                    position_ids=torch.tensor([pos], device=device),
                    use_cache=False,
                    logits_to_keep=keep.to(device),
                ).logits[0]
            token_logps = -F.cross_entropy(
                logits.float(), targets[keep].to(device), reduction="none"
            )
            index = torch.tensor(owner)[keep].to(device)
            row_sums = row_sums.index_add(0, index, token_logps)
        sums.append(row_sums)
    return torch.cat(sums) if sums else torch.zeros(0, device=device)


@contextlib.contextmanager
def reference_mode(model: Any, fresh_adapter: bool) -> Iterator[None]:
    """The model as the reference: eval mode, no gradients, and for a new LoRA adapter
    the adapter disabled (the frozen base)."""
    was_training = model.training
    model.eval()
    disable = model.disable_adapter() if fresh_adapter else contextlib.nullcontext()
    with torch.no_grad(), disable:
        yield
    model.train(was_training)


def reference_logps(
    model: Any,
    pairs: list[Pair],
    micro_batch_tokens: int,
    device: str,
    bf16: bool,
    *,
    fresh_adapter: bool,
) -> torch.Tensor:
    """[n_pairs, 2] reference log-probabilities (chosen, rejected)."""
    with reference_mode(model, fresh_adapter):
        chosen = sequence_logps(model, [p.chosen for p in pairs], micro_batch_tokens, device, bf16)
        rejected = sequence_logps(
            model, [p.rejected for p in pairs], micro_batch_tokens, device, bf16
        )
    return torch.stack([chosen, rejected], dim=1).cpu()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-pair loss, chosen rewards, rejected rewards); rewards carry no gradient."""
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen - rejected))
    return loss, beta * chosen.detach(), beta * rejected.detach()


def pair_stats(
    loss: torch.Tensor, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor
) -> PairStats:
    margin = chosen_rewards - rejected_rewards
    return PairStats(
        loss=float(loss.detach().mean()),
        chosen_reward=float(chosen_rewards.mean()),
        rejected_reward=float(rejected_rewards.mean()),
        margin=float(margin.mean()),
        accuracy=float((margin > 0).float().mean()),
    )


def preference_accuracy(
    model: Any, pairs: list[Pair], micro_batch_tokens: int, device: str, bf16: bool
) -> float:
    """The fraction of pairs whose preferred answer the model finds more likely."""
    with reference_mode(model, fresh_adapter=False):
        chosen = sequence_logps(model, [p.chosen for p in pairs], micro_batch_tokens, device, bf16)
        rejected = sequence_logps(
            model, [p.rejected for p in pairs], micro_batch_tokens, device, bf16
        )
    return float((chosen > rejected).float().mean())


class Preferences:
    """A DPO job's pairs and their reference log-probabilities, and its two operations:
    one training step's forward and backward over some pairs, and a no-gradient
    evaluation. The reference is computed once, before the first step, and saved in
    the output directory so that a resumed job uses the same one."""

    def __init__(
        self,
        pairs: list[Pair],
        reference: torch.Tensor,
        *,
        beta: float,
        micro_batch_tokens: int,
        device: str,
        bf16: bool,
    ) -> None:
        self.pairs = pairs
        self.reference = reference
        self.beta = beta
        self.micro_batch_tokens = micro_batch_tokens
        self.device = device
        self.bf16 = bf16

    @classmethod
    def prepare(
        cls,
        model: Any,
        pairs: list[Pair],
        saved: Path,
        *,
        beta: float,
        micro_batch_tokens: int,
        device: str,
        bf16: bool,
        fresh_adapter: bool,
    ) -> Preferences:
        """Pairs with the reference read from `saved`, or computed and saved there."""
        if saved.exists():
            reference = torch.load(saved)
        else:
            reference = reference_logps(
                model, pairs, micro_batch_tokens, device, bf16, fresh_adapter=fresh_adapter
            )
            torch.save(reference, saved)
        return cls(
            pairs, reference, beta=beta, micro_batch_tokens=micro_batch_tokens, device=device,
            bf16=bf16,
        )  # fmt: skip

    def n_tokens(self, idx: list[int]) -> int:
        return sum(len(self.pairs[i].chosen.input_ids) + len(self.pairs[i].rejected.input_ids)
                   for i in idx)  # fmt: skip

    def _loss(self, model: Any, idx: list[int]) -> tuple[torch.Tensor, PairStats]:
        chosen = sequence_logps(
            model, [self.pairs[i].chosen for i in idx], self.micro_batch_tokens, self.device,
            self.bf16,
        )  # fmt: skip
        rejected = sequence_logps(
            model, [self.pairs[i].rejected for i in idx], self.micro_batch_tokens, self.device,
            self.bf16,
        )  # fmt: skip
        ref = self.reference[idx].to(self.device)
        loss, chosen_r, rejected_r = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], self.beta)
        return loss.mean(), pair_stats(loss, chosen_r, rejected_r)

    def step(self, model: Any, idx: list[int]) -> PairStats:
        """Forward and backward over the pairs `idx` (the caller steps the optimizer)."""
        loss, stats = self._loss(model, idx)
        torch.autograd.backward(loss)
        return stats

    def evaluate(self, model: Any, idx: list[int]) -> PairStats:
        with reference_mode(model, fresh_adapter=False):
            return self._loss(model, idx)[1]
