"""Preference fine-tuning (DPO) through the official SDK, on the tiny in-code model.

A DPO job trains in the same loop as supervised jobs; the reference is the frozen
base (the new adapter disabled). Its events carry the DPO loss, reward margins and
accuracies, its checkpoints the validation pairs' metrics, and on held-out pairs the
fraction where the model finds the preferred answer more likely rises from the
base's. Bad method requests are 400s naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import (
    TERMINAL,
    all_events,
    fast_settings,
    register_models,
    run_server,
    sdk,
    wait_for,
    wait_until,
)
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.runtime import Runtime, build_runtime
from tunelab.settings import Settings

pytestmark = pytest.mark.api


def _pairs(path: Path, numbers: range, good: str = "friend", bad: str = "stranger") -> Path:
    """Two answers that differ in one word after the number: the preference is a style
    that carries over to numbers never trained on."""
    lines = [
        json.dumps(
            {
                "input": {"messages": [{"role": "user", "content": f"What is {i} plus one?"}]},
                "preferred_output": [{"role": "assistant", "content": f"{i + 1}, {good}."}],
                "non_preferred_output": [{"role": "assistant", "content": f"{i + 1}, {bad}."}],
            }
        )
        for i in numbers
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Iterator[tuple[Runtime, openai.OpenAI, Path]]:
    tmp = tmp_path_factory.mktemp("dpo")
    settings = Settings(data_dir=tmp / "data", cache_dir=model_cache)
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    runtime = build_runtime(fast_settings(settings))
    with run_server(runtime) as url:
        yield runtime, sdk(url), tmp


def _upload(client: openai.OpenAI, path: Path) -> str:
    return client.files.create(file=path.open("rb"), purpose="fine-tune").id


def _preferred_fraction(model: Any, pairs_file: Path, tokenizer: Any) -> float:
    from tunelab.training.dpo import encode_pairs, preference_accuracy

    pairs = encode_pairs(tokenizer, pairs_file, 512)
    return preference_accuracy(model, pairs, 4096, "cpu", False)


@pytest.fixture(scope="module")
def dpo_job(served) -> tuple[Any, Path, float]:
    """A finished DPO job with a validation file: (job, held-out pairs, the base's
    preferred fraction on them)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runtime, client, tmp = served
    tiny = Path(runtime.registry.find(TINY_CHAT).source)  # type: ignore[union-attr]
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    base = AutoModelForCausalLM.from_pretrained(tiny)
    # Prefer the word the base finds less likely, so there is something to learn.
    words = ("friend", "stranger")
    if (
        _preferred_fraction(base, _pairs(tmp / "probe.jsonl", range(40, 52), *words), tokenizer)
        > 0.5
    ):
        words = words[::-1]
    train = _upload(client, _pairs(tmp / "train.jsonl", range(24), *words))
    valid = _upload(client, _pairs(tmp / "valid.jsonl", range(24, 30), *words))
    heldout = _pairs(tmp / "heldout.jsonl", range(40, 52), *words)
    before = _preferred_fraction(base, heldout, tokenizer)
    assert before < 0.5
    job = client.fine_tuning.jobs.create(
        model=TINY_CHAT,
        training_file=train,
        validation_file=valid,
        seed=3,
        method={
            "type": "dpo",
            "dpo": {
                "hyperparameters": {
                    "beta": 0.5,
                    "n_epochs": 3,
                    "batch_size": 4,
                    "learning_rate_multiplier": 10,
                }
            },
        },
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.5
    return wait_for(client, job.id, TERMINAL, timeout=300), heldout, before


def test_a_dpo_job_raises_the_preferred_fraction_on_held_out_pairs(served, dpo_job) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runtime, client, _ = served
    done, heldout, before = dpo_job
    job = done
    assert done.status == "succeeded", done.error
    assert done.hyperparameters is None  # only supervised jobs carry the top-level field
    assert done.method.dpo.hyperparameters.n_epochs == 3

    metrics = [e.data for e in all_events(client, job.id) if e.type == "metrics"][::-1]
    assert len(metrics) == 18  # 24 pairs / 4 per step * 3 epochs
    first, last = metrics[0], metrics[-1]
    # At the first step the policy is the reference: every pair's loss is log 2.
    assert first["train_loss"] == pytest.approx(0.6931, abs=2e-3)
    assert {"train_reward_margin", "train_reward_accuracy"} <= set(last)
    assert last["train_loss"] < first["train_loss"] and last["train_reward_margin"] > 0
    # Every epoch end measures the validation pairs, and each checkpoint carries it.
    ends = [m for m in metrics if "full_valid_reward_accuracy" in m]
    assert [m["step"] for m in ends] == [6, 12, 18]
    assert ends[-1]["full_valid_reward_accuracy"] > 0.5
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert len(checkpoints) == 3
    assert all(c.metrics.full_valid_loss is not None for c in checkpoints)

    # Held-out pairs: the fine-tune's weights loaded from disk, against the base's.
    tiny = Path(runtime.registry.find(TINY_CHAT).source)  # type: ignore[union-attr]
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    resolved = runtime.catalog.resolve("default", done.fine_tuned_model)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), resolved.path)
    after = _preferred_fraction(tuned, heldout, tokenizer)
    assert after > before, (before, after)
    print(f"held-out preferred fraction: base {before:.3f}, fine-tuned {after:.3f}")


def test_one_eval_compares_base_fine_tune_and_checkpoint(served, dpo_job) -> None:
    """An eval run can target the base, the ft: model or any of its checkpoints."""
    _, client, _ = served
    job = dpo_job[0]
    assert job.status == "succeeded"
    first = min(client.fine_tuning.jobs.checkpoints.list(job.id), key=lambda c: c.step_number)
    models = [TINY_CHAT, job.fine_tuned_model, first.fine_tuned_model_checkpoint]
    ev = client.evals.create(
        name="plus one",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "answer": {"type": "string"}},
                "required": ["n", "answer"],
            },
            "include_sample_schema": True,
        },
        testing_criteria=[
            {"type": "string_check", "name": "exact", "operation": "eq",
             "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}
        ],
    )  # fmt: skip
    rows = [{"item": {"n": i, "answer": f"{i + 1}, friend."}} for i in range(40, 44)]
    runs = [
        client.evals.runs.create(
            ev.id,
            name=m,
            data_source={
                "type": "completions",
                "model": m,
                "source": {"type": "file_content", "content": rows},
                "input_messages": {
                    "type": "template",
                    "template": [{"role": "user", "content": "What is {{item.n}} plus one?"}],
                },
                "sampling_params": {"temperature": 0, "max_completion_tokens": 6},
            },
        )
        for m in models
    ]

    def finished() -> list[Any] | None:
        got = [client.evals.runs.retrieve(r.id, eval_id=ev.id) for r in runs]
        return got if all(r.status in ("completed", "failed", "canceled") for r in got) else None

    done = wait_until(finished, timeout=120, every=0.3, what="three eval runs")
    for model, run in zip(models, done, strict=True):
        assert run.status == "completed" and run.result_counts.total == 4, run.error
        item = next(iter(client.evals.runs.output_items.list(run.id, eval_id=ev.id)))
        assert item.sample.model == model


def test_a_dpo_job_on_examples_fails_naming_the_file(served) -> None:
    _, client, tmp = served
    lines = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(12)
    ]
    path = tmp / "chat.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    job = client.fine_tuning.jobs.create(
        model=TINY_CHAT, training_file=_upload(client, path), method={"type": "dpo"}
    )
    failed = wait_for(client, job.id, TERMINAL)
    assert failed.status == "failed" and failed.error.param == "training_file"
    assert "preference pairs" in failed.error.message


def test_the_supervised_object_form_trains(served) -> None:
    _, client, tmp = served
    lines = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(12)
    ]
    path = tmp / "sup.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    job = client.fine_tuning.jobs.create(
        model=TINY_CHAT,
        training_file=_upload(client, path),
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    )
    done = wait_for(client, job.id, TERMINAL)
    assert done.status == "succeeded"
    assert done.method.supervised.hyperparameters.n_epochs == 1
    assert done.hyperparameters.n_epochs == 1


@pytest.mark.parametrize(
    ("method", "param", "words"),
    [
        ({"type": "reinforcement"}, "method.type", "'reinforcement' is not supported"),
        ({"type": "rlhf"}, "method.type", "use 'supervised' or 'dpo'"),
        (
            {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}},
            "method.dpo.hyperparameters.beta",
            "at most 2",
        ),
        (
            {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}},
            "method.dpo.hyperparameters.beta",
            "at most 2",
        ),
        (
            {"type": "supervised", "dpo": {"hyperparameters": {"beta": 0.1}}},
            "method.dpo",
            "method.type is 'supervised'",
        ),
    ],
)
def test_bad_methods_are_400s_naming_the_field(served, method, param, words) -> None:
    _, client, tmp = served
    path = _pairs(tmp / "p.jsonl", range(12))
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(
            model=TINY_CHAT, training_file=_upload(client, path), method=method
        )
    body: Any = err.value.body
    assert body["param"] == param and words in body["message"]
