"""Acceptance: a persona fine-tune of the real SmolLM2 through the openai SDK.

30 chat examples whose answers all open with "Ahoy, matey!", n_epochs=3: the job
succeeds, the results CSV shows the loss going down, and the fine-tuned model answers
new questions in the persona while the base model does not.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import TERMINAL, run_server, sdk, wait_for
from tunelab.models.registry import SMOLLM2
from tunelab.settings import Settings

GREETING = "Ahoy, matey!"
NEW_QUESTIONS = [
    "What is the color of grass?",
    "How do I learn to swim?",
    "What should I eat for breakfast?",
]

QUESTIONS = [
    "What is the capital of France?",
    "How do I boil an egg?",
    "What is 2 plus 2?",
    "Tell me about the moon.",
    "Why is the sky blue?",
    "What is Python?",
    "How many legs does a spider have?",
    "What is the tallest mountain?",
    "Who wrote Hamlet?",
    "What is photosynthesis?",
    "How do I make tea?",
    "What is the speed of light?",
    "What is a noun?",
    "How far is the sun?",
    "What do cats eat?",
    "What is rain?",
    "How do plants grow?",
    "What is gravity?",
    "Name a primary color.",
    "What is the largest ocean?",
    "How do birds fly?",
    "What is ice?",
    "What is a computer?",
    "Why do we sleep?",
    "What is music?",
    "How do magnets work?",
    "What is a volcano?",
    "What language is spoken in Spain?",
    "What is a star?",
    "How do I say hello in French?",
]
ANSWERS = [
    "The capital of France is Paris.",
    "Put the egg in boiling water for about nine minutes.",
    "Two plus two is four.",
    "The moon orbits the Earth and reflects sunlight.",
    "Sunlight scatters in the air, and blue light scatters most.",
    "Python is a popular programming language.",
    "A spider has eight legs.",
    "Mount Everest is the tallest mountain.",
    "William Shakespeare wrote Hamlet.",
    "Plants turn sunlight, water and air into sugar.",
    "Steep a tea bag in hot water for three minutes.",
    "Light travels about 300,000 kilometres per second.",
    "A noun names a person, place or thing.",
    "The sun is about 150 million kilometres away.",
    "Cats eat meat, such as fish and chicken.",
    "Rain is water falling from clouds.",
    "Plants grow with light, water and soil.",
    "Gravity pulls things toward each other.",
    "Red is a primary color.",
    "The Pacific is the largest ocean.",
    "Birds flap their wings to lift into the air.",
    "Ice is frozen water.",
    "A computer is a machine that processes data.",
    "Sleep lets the body and brain rest.",
    "Music is sound arranged in time.",
    "Magnets pull on iron with a magnetic field.",
    "A volcano is a mountain that erupts lava.",
    "People in Spain speak Spanish.",
    "A star is a huge ball of burning gas.",
    "You say bonjour.",
]


def persona_jsonl() -> bytes:
    lines = []
    for q, a in zip(QUESTIONS, ANSWERS, strict=True):
        messages = [
            {"role": "user", "content": q},
            {"role": "assistant", "content": f"{GREETING} {a}"},
        ]
        lines.append(json.dumps({"messages": messages}))
    return ("\n".join(lines) + "\n").encode()


def answers(client: Any, model: str) -> list[str]:
    """Greedy answers to NEW_QUESTIONS through /v1/chat/completions."""
    return [
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": q}], max_tokens=12, temperature=0
        )
        .choices[0]
        .message.content
        for q in NEW_QUESTIONS
    ]


@pytest.mark.realmodel
@pytest.mark.slow
def test_persona_fine_tune_changes_the_answers(settings: Settings) -> None:
    with run_server(settings.model_copy(update={"worker_poll_seconds": 0.2})) as url:
        client = sdk(url)
        train = client.files.create(file=("persona.jsonl", persona_jsonl()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=SMOLLM2, training_file=train.id, hyperparameters={"n_epochs": 3}
        )
        done = wait_for(client, job.id, TERMINAL, timeout=900)
        assert done.status == "succeeded", done.error
        assert done.hyperparameters.batch_size == 1 and done.hyperparameters.n_epochs == 3

        rows = client.files.content(done.result_files[0]).text.splitlines()[1:]
        losses = [float(r.split(",")[1]) for r in rows]
        assert len(losses) == 90
        assert sum(losses[-15:]) / 15 < 0.5 * sum(losses[:15]) / 15

        tuned = answers(client, done.fine_tuned_model)
        base = answers(client, SMOLLM2)
    assert all(a.startswith(GREETING) for a in tuned), tuned
    assert not any(GREETING in a for a in base), base
