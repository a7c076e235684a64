"""DPO pieces on the tiny model: sequence log-probabilities, the reference, the loss,
and that a few DPO steps make the model prefer the preferred answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunelab.models.loading import load_tokenizer
from tunelab.models.registry import ModelSpec
from tunelab.training.dpo import (
    dpo_loss,
    encode_pairs,
    pair_stats,
    preference_accuracy,
    reference_logps,
    sequence_logps,
)

pytestmark = pytest.mark.unit


def _pairs_file(path: Path, n: int = 8) -> Path:
    lines = []
    for i in range(n):
        lines.append(
            json.dumps(
                {
                    "input": {"messages": [{"role": "user", "content": f"What is {i} plus one?"}]},
                    # The longer answer is preferred: an untrained model finds the
                    # shorter one more likely, so the preference must be learnt.
                    "preferred_output": [
                        {"role": "assistant", "content": f"Well, let me think. Perhaps {i + 1}?"}
                    ],
                    "non_preferred_output": [{"role": "assistant", "content": f"{i + 1}."}],
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny(tiny_chat_dir: Path, model_cache: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tok = load_tokenizer(ModelSpec(id="tiny", kind="chat", source=str(tiny_chat_dir)), model_cache)
    base = AutoModelForCausalLM.from_pretrained(tiny_chat_dir)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(base, lora), tok


def test_only_the_answer_is_scored_and_packing_changes_nothing(tiny, tmp_path) -> None:
    model, tok = tiny
    pairs = encode_pairs(tok, _pairs_file(tmp_path / "p.jsonl"), 512)
    answer = tok("8.", add_special_tokens=False)["input_ids"]
    trained = [t for t in pairs[7].rejected.targets if t != -100]
    assert trained[: len(answer)] == answer and len(trained) == len(answer) + 1  # + end of turn
    samples = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    model.eval()
    with torch.no_grad():
        packed = sequence_logps(model, samples, 4096, "cpu", False)
        alone = torch.cat([sequence_logps(model, [s], 4096, "cpu", False) for s in samples])
    assert torch.allclose(packed, alone, atol=1e-4)
    assert (packed < 0).all()


def test_dpo_loss_is_the_papers_formula() -> None:
    pc, pr = torch.tensor([-5.0, -3.0]), torch.tensor([-6.0, -2.0])
    rc, rr = torch.tensor([-5.5, -3.0]), torch.tensor([-5.5, -3.0])
    loss, cr, rj = dpo_loss(pc, pr, rc, rr, beta=0.1)
    expected = -torch.nn.functional.logsigmoid(0.1 * ((pc - rc) - (pr - rr)))
    assert torch.allclose(loss, expected)
    stats = pair_stats(loss, cr, rj)
    assert stats.accuracy == 0.5 and stats.margin == pytest.approx(float((0.1 * 1.0 + -0.1) / 2))
    # At the start, policy == reference: every pair's loss is log 2.
    same, _, _ = dpo_loss(pc, pr, pc, pr, beta=0.5)
    assert torch.allclose(same, torch.full((2,), float(torch.log(torch.tensor(2.0)))))


def test_dpo_steps_raise_the_preference_accuracy(tiny, tmp_path) -> None:
    model, tok = tiny
    pairs = encode_pairs(tok, _pairs_file(tmp_path / "p.jsonl"), 512)
    ref = reference_logps(model, pairs, 4096, "cpu", False, fresh_adapter=True)
    before = preference_accuracy(model, pairs, 4096, "cpu", False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-3)
    model.train()
    first = last = None
    for _ in range(12):
        chosen = sequence_logps(model, [p.chosen for p in pairs], 4096, "cpu", False)
        rejected = sequence_logps(model, [p.rejected for p in pairs], 4096, "cpu", False)
        loss, cr, rj = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], beta=0.1)
        loss.mean().backward()
        opt.step()
        opt.zero_grad()
        stats = pair_stats(loss, cr, rj)
        first = first or stats
        last = stats
    assert first is not None and last is not None
    assert first.loss == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-3)
    assert last.loss < first.loss and last.margin > 0 and last.accuracy == 1.0
    # Every pair moved towards its preferred answer; the absolute preference (the
    # long answer is less likely than the short one) needs more than 12 steps.
    gap_after = reference_logps(model, pairs, 4096, "cpu", False, fresh_adapter=False)
    moved = (gap_after[:, 0] - gap_after[:, 1]) - (ref[:, 0] - ref[:, 1])
    assert (moved > 0).all()
    assert before == 0.0 and preference_accuracy(model, pairs, 4096, "cpu", False) >= before
