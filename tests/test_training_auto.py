""" "auto" hyperparameters chosen from the data, with the reasons the job reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.training.auto import Profile, choose, profile

pytestmark = pytest.mark.unit

AUTO = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}


def _labelled(path: Path, counts: dict[str, int]) -> Path:
    lines = []
    for label, n in counts.items():
        for i in range(n):
            msgs = [
                {"role": "user", "content": f"ticket {label} number {i}"},
                {"role": "assistant", "content": label},
            ]
            lines.append(json.dumps({"messages": msgs}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_labels_are_detected_and_free_text_is_not(tmp_path: Path) -> None:
    p = profile(_labelled(tmp_path / "a.jsonl", {"billing": 40, "bug": 30, "account": 10}))
    assert p.classification and p.labels == {"billing": 40, "bug": 30, "account": 10}
    free = tmp_path / "b.jsonl"
    free.write_text(
        "\n".join(
            json.dumps({"prompt": f"q{i}", "completion": f"a long free answer number {i}"})
            for i in range(30)
        )
    )
    assert not profile(free).classification


def test_the_tickets_rule_reproduces_the_measured_schedule() -> None:
    """138 tickets, 4 labels: 3 epochs of batch 8 at 4x (measured 0.94 accuracy)."""
    tickets = Profile(138, labels={"a": 35, "b": 35, "c": 34, "d": 34})
    got = choose(tickets, AUTO, method="supervised", training="lora")
    assert got.values == {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 4.0}
    assert len(got.reasons) == 3 and "4 labels" in got.reasons[0]


def test_rare_labels_and_small_sets_get_more_epochs() -> None:
    rare = Profile(200, labels={"common": 195, "rare": 5})
    got = choose(rare, AUTO, method="supervised", training="lora")
    # 25 steps per epoch would need 2 epochs; the rare label needs 6 for 30 visits.
    assert got.values["n_epochs"] == 6
    small = Profile(64, labels={"x": 32, "y": 32})
    # batch 4, 16 steps per epoch: 50 steps need 4 epochs.
    assert choose(small, AUTO, method="supervised", training="lora").values["n_epochs"] == 4
    fixed = choose(small, {**AUTO, "n_epochs": 2}, method="supervised", training="lora")
    assert fixed.values["n_epochs"] == 2 and not any("n_epochs" in r for r in fixed.reasons)


def test_general_and_dpo_rules() -> None:
    general = choose(Profile(100), AUTO, method="supervised", training="lora")
    assert general.values == {"n_epochs": 3, "batch_size": 6, "learning_rate_multiplier": 2.0}
    dpo = choose(Profile(20), {**AUTO, "beta": "auto"}, method="dpo", training="lora")
    assert dpo.values["beta"] == 0.1 and dpo.values["learning_rate_multiplier"] == 0.1
    assert any("preference" in r for r in dpo.reasons)
