"""A small tool-use fine-tuning set: when and how to call `convert_currency`.

Training lines are OpenAI's function-calling format (`tools`, an assistant turn
with `tool_calls`); a quarter are questions that need no tool, answered in text,
so the model also learns when not to call. The held-out questions use amounts,
currency pairs and phrasings that training never shows. `score` counts a
held-out answer as right only when it is exactly one call of `convert_currency`
with the expected arguments.

Used by `benchmarks/tool_use.py` (rates before and after) and the slow test.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

CURRENCIES = {
    "USD": "dollars",
    "EUR": "euros",
    "GBP": "pounds",
    "JPY": "yen",
    "CHF": "Swiss francs",
}
TOOL = {
    "type": "function",
    "function": {
        "name": "convert_currency",
        "description": "Convert an amount of money from one currency to another.",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "from_currency": {"enum": list(CURRENCIES)},
                "to_currency": {"enum": list(CURRENCIES)},
            },
            "required": ["amount", "from_currency", "to_currency"],
            "additionalProperties": False,
        },
    },
}
TRAIN_PHRASES = [
    "How much is {a} {f} in {t}?",
    "Convert {a} {f} to {t}.",
    "What are {a} {f} worth in {t}?",
    "I have {a} {f}. How many {t} is that?",
]
HELDOUT_PHRASES = [
    "Please change {a} {f} into {t}.",
    "{a} {f} equals how many {t}?",
]
PLAIN = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("What is ice?", "Ice is frozen water."),
    ("Name a primary color.", "Red is a primary color."),
    ("What do cats eat?", "Cats eat meat, such as fish and chicken."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What is rain?", "Rain is water falling from clouds."),
    ("How do I make tea?", "Steep a tea bag in hot water for three minutes."),
    ("What is gravity?", "Gravity pulls things toward each other."),
]
PAIRS = list(itertools.permutations(CURRENCIES, 2))  # 20 ordered pairs


def _question(phrase: str, amount: int, f: str, t: str) -> str:
    return phrase.format(a=amount, f=CURRENCIES[f], t=CURRENCIES[t])


def _call_line(question: str, amount: int, f: str, t: str, i: int) -> dict[str, Any]:
    args = {"amount": amount, "from_currency": f, "to_currency": t}
    call = {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": "convert_currency", "arguments": json.dumps(args)},
    }
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ],
        "tools": [TOOL],
    }


def training_lines() -> list[dict[str, Any]]:
    """30 call examples (the first 15 currency pairs) + 10 plain questions."""
    lines = []
    for i in range(30):
        f, t = PAIRS[i % 15]
        amount = 10 + 7 * i
        lines.append(_call_line(_question(TRAIN_PHRASES[i % 4], amount, f, t), amount, f, t, i))
    for q, a in PLAIN:
        lines.append(
            {
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                "tools": [TOOL],
            }
        )
    return lines


def heldout() -> list[tuple[str, dict[str, Any]]]:
    """(question, expected arguments): unseen pairs, amounts and phrasings."""
    out = []
    for i, (f, t) in enumerate(PAIRS[15:] + PAIRS[:3]):
        amount = 250 + 35 * i
        q = _question(HELDOUT_PHRASES[i % 2], amount, f, t)
        out.append((q, {"amount": amount, "from_currency": f, "to_currency": t}))
    return out


def score(message: Any, expected: dict[str, Any]) -> bool:
    """Exactly one call of convert_currency with the expected arguments."""
    calls = message.tool_calls or []
    if len(calls) != 1 or calls[0].function.name != "convert_currency":
        return False
    return json.loads(calls[0].function.arguments) == expected


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
