"""Choosing "auto" hyperparameters from the data, and saying why.

`profile(path)` reads a training file once (examples, answer lengths, the answers'
label distribution); `choose(profile, requested, method)` fills every "auto" value
and returns one reason per choice, which the job reports in its events.

Classification-style data (few distinct short answers: a label per example) gets its
own rule. A label is a handful of tokens, so each example carries very little
gradient, and the default schedule stops before the adapter has learnt the mapping:
on the quickstart's tickets (138 examples, 4 labels) one epoch at the sqrt rule's
learning rate scored 0.23 accuracy, three epochs at 4x scored 0.94 (embeddings +
logistic regression: 0.80), which is 54 optimizer steps of 8 examples. So for
labels: enough epochs (3 at least) for MIN_CLASSIFICATION_STEPS steps and for the
rarest label to be seen MIN_LABEL_VISITS times, and a 4x learning rate for LoRA; the
batch size keeps the general rule.

Everything else keeps OpenAI's epoch rule and the batch/learning-rate rules of
`tunelab.training.config`. DPO defaults to beta 0.1 (the DPO paper's and OpenAI's
usual value) and a learning rate a tenth of supervised's: preference steps move
the policy away from its reference, and a large step overshoots.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.examples import iter_examples
from tunelab.training.config import (
    auto_batch_size,
    auto_learning_rate_multiplier,
    auto_n_epochs,
    steps_per_epoch,
)

MIN_CLASSIFICATION_STEPS = 50
MIN_LABEL_VISITS = 30
MAX_CLASSIFICATION_EPOCHS = 10
MAX_LABEL_CHARS = 40
CLASSIFICATION_LR_MULTIPLIER = 4.0
DPO_BETA = 0.1
DPO_LR_FACTOR = 0.1


@dataclass(frozen=True)
class Profile:
    n_examples: int
    labels: Counter[str] = field(default_factory=Counter)  # answers, when they are labels
    mean_answer_chars: float = 0.0

    @property
    def classification(self) -> bool:
        return bool(self.labels)


def _answer(example: dict[str, Any]) -> str | None:
    if "completion" in example:
        return str(example["completion"]).strip()
    if "preferred_output" in example:
        return None
    last = example["messages"][-1]
    if last.get("role") != "assistant":
        return None
    content = last.get("content")
    return content.strip() if isinstance(content, str) else None


def profile(path: Path) -> Profile:
    """What the rules look at, in one pass over the file."""
    answers: list[str] = []
    n = 0
    for ex in iter_examples(path):
        n += 1
        a = _answer(ex)
        if a is not None:
            answers.append(a)
    counts = Counter(answers)
    is_labels = (
        len(answers) == n
        and 2 <= len(counts) < n / 3
        and all(len(a) <= MAX_LABEL_CHARS for a in counts)
    )
    mean = sum(map(len, answers)) / len(answers) if answers else 0.0
    return Profile(n, counts if is_labels else Counter(), mean)


@dataclass(frozen=True)
class Choice:
    values: dict[str, Any]
    reasons: list[str]


def choose(p: Profile, requested: dict[str, Any], *, method: str, training: str) -> Choice:
    """Every "auto" in `requested` resolved; `method` is "supervised" or "dpo",
    `training` "lora" or "full"."""
    hp = dict(requested)
    reasons: list[str] = []
    n = p.n_examples
    if p.classification and method == "supervised":
        rarest = min(p.labels.values())
        if hp.get("batch_size") == "auto":
            hp["batch_size"] = auto_batch_size(n)
            reasons.append(
                f"batch_size {hp['batch_size']}: {n} examples whose answers are "
                f"{len(p.labels)} labels (1 below 64 examples, up to 8)"
            )
        spe = steps_per_epoch(n, int(hp["batch_size"]))
        if hp.get("n_epochs") == "auto":
            for_steps = math.ceil(MIN_CLASSIFICATION_STEPS / spe)
            for_rarest = math.ceil(MIN_LABEL_VISITS / rarest)
            hp["n_epochs"] = min(MAX_CLASSIFICATION_EPOCHS, max(3, for_steps, for_rarest))
            reasons.append(
                f"n_epochs {hp['n_epochs']}: at least {MIN_CLASSIFICATION_STEPS} steps "
                f"({spe} per epoch) and {MIN_LABEL_VISITS} visits of the rarest label "
                f"({rarest} examples), at most {MAX_CLASSIFICATION_EPOCHS}"
            )
        if hp.get("learning_rate_multiplier") == "auto":
            lrm = (
                CLASSIFICATION_LR_MULTIPLIER
                if training == "lora"
                else auto_learning_rate_multiplier(int(hp["batch_size"]))
            )
            hp["learning_rate_multiplier"] = lrm
            reasons.append(
                f"learning_rate_multiplier {lrm:g}: a label is a few tokens of gradient per "
                "example" + (", so LoRA takes larger steps" if training == "lora" else "")
            )
        return Choice(hp, reasons)
    if hp.get("n_epochs") == "auto":
        hp["n_epochs"] = auto_n_epochs(n)
        reasons.append(
            f"n_epochs {hp['n_epochs']}: about 3 passes, at least ~100 and at most ~25,000 "
            f"example visits for {n} examples"
        )
    if hp.get("batch_size") == "auto":
        hp["batch_size"] = auto_batch_size(n)
        reasons.append(f"batch_size {hp['batch_size']}: {n} examples (1 below 64, up to 8)")
    if hp.get("learning_rate_multiplier") == "auto":
        lrm = auto_learning_rate_multiplier(int(hp["batch_size"]))
        if method == "dpo":
            lrm = round(lrm * DPO_LR_FACTOR, 4)
        hp["learning_rate_multiplier"] = lrm
        reasons.append(
            f"learning_rate_multiplier {lrm:g}: sqrt of the batch size, capped at 2"
            + (f", times {DPO_LR_FACTOR:g} for preference steps" if method == "dpo" else "")
        )
    if method == "dpo" and hp.get("beta") == "auto":
        hp["beta"] = DPO_BETA
        reasons.append(f"beta {DPO_BETA:g}: the usual DPO strength")
    return Choice(hp, reasons)
