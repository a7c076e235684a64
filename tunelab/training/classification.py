"""Classification metrics of a validation set (the legacy `compute_classification_metrics`).

A validation set is a classification set when its answers are few distinct labels:
fewer distinct answers than a third of the examples (the legacy prepare-data rule).
Then, after training, the model answers every validation prompt greedily and we
report the accuracy and weighted F1 of its answers against the expected labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunelab.data.encoding import template_messages
from tunelab.data.examples import iter_examples


def _prompt_and_label(tokenizer: Any, example: dict[str, Any]) -> tuple[list[int], str] | None:
    if "messages" in example:
        messages = example["messages"]
        if not messages or messages[-1].get("role") != "assistant":
            return None
        ids = tokenizer.apply_chat_template(
            template_messages(messages[:-1]),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        label = template_messages(messages[-1:])[0]["content"]
    else:
        ids = tokenizer(example["prompt"])["input_ids"]
        label = example["completion"]
    return list(ids), label.strip()


def classification_metrics(
    model: Any, tokenizer: Any, path: Path, device: str
) -> dict[str, float] | None:
    """{"classification_accuracy", "classification_weighted_f1"}, or None when the
    validation set is not a classification set."""
    pairs = [
        p for p in (_prompt_and_label(tokenizer, ex) for ex in iter_examples(path)) if p is not None
    ]
    labels = [label for _, label in pairs]
    if not labels or len(set(labels)) >= len(labels) / 3:
        return None
    from sklearn.metrics import f1_score

    longest = max(
        len(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in set(labels)
    )
    was_training = model.training
    model.eval()
    predicted = []
    with torch.no_grad():
        for ids, _ in pairs:
            out = model.generate(
                input_ids=torch.tensor([ids], device=device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
                max_new_tokens=longest + 2,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            predicted.append(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip())
    model.train(was_training)
    return {
        "classification_accuracy": sum(p == t for p, t in zip(predicted, labels, strict=True))
        / len(labels),
        "classification_weighted_f1": float(
            f1_score(labels, predicted, average="weighted", zero_division=0)
        ),
    }
