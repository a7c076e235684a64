"""Which grammar engine to constrain decoding with: llguidance, xgrammar, outlines-core.

Same tokenizer (SmolLM2's, 49,152 tokens), same JSON schemas, same token
sequences: the time to compile a schema, and the time per generated token to
compute the allowed-token mask and advance the matcher (what the generation
worker pays on every constrained step). A decode step of SmolLM2-135M on this
CPU takes ~20 ms, so that is the budget the per-token cost is a share of.

xgrammar and outlines-core are not tunelab dependencies; install them into a
scratch environment to run this (`pip install xgrammar outlines-core`).

    .venv/bin/python benchmarks/grammar_engines.py [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tunelab.models.loading import load_tokenizer
from tunelab.models.registry import SMOLLM2, Registry
from tunelab.settings import Settings

SCHEMAS: dict[str, tuple[dict[str, Any], Any]] = {
    "person (3 fields)": (
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "email": {"type": "string"},
            },
            "required": ["name", "age", "email"],
            "additionalProperties": False,
        },
        {"name": "Ada Lovelace", "age": 36, "email": "ada@example.com"},
    ),
    "order (nested, enum, array)": (
        {
            "type": "object",
            "properties": {
                "customer": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "tier": {"enum": ["gold", "basic"]}},
                    "required": ["id", "tier"],
                    "additionalProperties": False,
                },
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                        "required": ["sku", "qty"],
                        "additionalProperties": False,
                    },
                },
                "note": {"type": ["string", "null"]},
            },
            "required": ["customer", "items", "note"],
            "additionalProperties": False,
        },
        {
            "customer": {"id": 42, "tier": "gold"},
            "items": [{"sku": "A-100", "qty": 2}, {"sku": "B-7", "qty": 1}],
            "note": "leave at the door, please",
        },
    ),
}

# (compile(schema) -> state factory, step(state, token) -> None)
Engine = tuple[Callable[[dict[str, Any]], Callable[[], Any]], Callable[[Any, int], None]]


def llguidance_engine(tok: Any) -> Engine:
    import llguidance
    import llguidance.hf
    import llguidance.torch as lt

    llt = llguidance.hf.from_tokenizer(tok)
    mask = lt.allocate_token_bitmask(1, llt.vocab_size)
    style = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

    def compile_(schema: dict[str, Any]) -> Callable[[], Any]:
        grammar = llguidance.LLMatcher.grammar_from_json_schema({**schema, "x-guidance": style})
        llguidance.LLMatcher(llt, grammar)  # first matcher does the lexer work
        return lambda: llguidance.LLMatcher(llt, grammar)

    def step(m: Any, t: int) -> None:
        lt.fill_next_token_bitmask(m, mask, 0)
        assert m.consume_token(t), m.get_error()

    return compile_, step


def xgrammar_engine(tok: Any) -> Engine:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    mask = xgr.allocate_token_bitmask(1, info.vocab_size)

    def compile_(schema: dict[str, Any]) -> Callable[[], Any]:
        compiled = compiler.compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=(", ", ": ")
        )
        return lambda: xgr.GrammarMatcher(compiled)

    def step(m: Any, t: int) -> None:
        m.fill_next_token_bitmask(mask)
        assert m.accept_token(t)

    return compile_, step


def outlines_engine(tok: Any) -> Engine:
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    # Vocabulary keyed by each token's decoded text.
    table: dict[str, list[int]] = {}
    for i in range(len(tok)):
        if i == tok.eos_token_id:
            continue
        table.setdefault(tok.decode([i]), []).append(i)
    vocab = Vocabulary(tok.eos_token_id, table)

    def compile_(schema: dict[str, Any]) -> Callable[[], Any]:
        regex = build_regex_from_schema(json.dumps(schema), whitespace_pattern=r"[ ]?")
        index = Index(regex, vocab)
        return lambda: Guide(index)

    def step(g: Any, t: int) -> None:
        allowed = g.get_tokens()
        assert t in allowed
        g.advance(t)

    return compile_, step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    tok = load_tokenizer(Registry.load().get(SMOLLM2), Settings().model_cache_dir)
    torch.set_num_threads(1)
    rows = []
    for name, factory in [
        ("llguidance", llguidance_engine),
        ("xgrammar", xgrammar_engine),
        ("outlines-core", outlines_engine),
    ]:
        try:
            t = time.perf_counter()
            compile_, step = factory(tok)
            setup = time.perf_counter() - t
        except ImportError as e:
            print(f"{name}: not installed ({e.name})")
            continue
        for label, (schema, value) in SCHEMAS.items():
            ids = tok(json.dumps(value), add_special_tokens=False)["input_ids"]
            t = time.perf_counter()
            new = compile_(schema)
            compile_s = time.perf_counter() - t
            per_token = []
            for _ in range(args.reps):
                state = new()
                t = time.perf_counter()
                for token in ids:
                    step(state, token)
                per_token.append((time.perf_counter() - t) / len(ids))
            rows.append((name, label, setup, compile_s, statistics.median(per_token)))
    print(f"\nSmolLM2 tokenizer ({len(tok)} tokens), median of {args.reps} runs, 1 thread")
    print(f"{'engine':14} {'schema':28} {'tokenizer':>9} {'compile':>8} {'ms/token':>9}")
    for name, label, setup, compile_s, per_token in rows:
        print(f"{name:14} {label:28} {setup:8.2f}s {compile_s:7.3f}s {1000 * per_token:9.3f}")


if __name__ == "__main__":
    main()
