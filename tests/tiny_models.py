"""Tiny models built in code for the fast test tier.

`build_tiny_chat_model(dir)` writes a 2-layer Llama with the real SmolLM2 tokenizer
and chat template: training and inference code paths are the real ones, at a
fraction of the cost. Register it with `tiny_registry_entry(dir)` in the data dir's
models.json to use it through the API as model "tiny-chat".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_CHAT = "tiny-chat"


def build_tiny_chat_model(target: Path, tokenizer_cache: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import SMOLLM2, Registry

    if (target / "config.json").exists():
        return target
    tok = load_tokenizer(Registry.load().get(SMOLLM2), tokenizer_cache)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tok.save_pretrained(target)
    return target


def tiny_registry_entry(path: Path) -> dict[str, Any]:
    return {
        "id": TINY_CHAT,
        "kind": "chat",
        "source": str(path),
        "fine_tunable": True,
        "context_length": 512,
    }
