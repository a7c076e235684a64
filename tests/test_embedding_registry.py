"""Which embedding model the defaults and OpenAI's aliases name, and registry prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.models.registry import E5_SMALL, MINILM, Registry

pytestmark = pytest.mark.realmodel

EMBEDDING_NAMES = ("text-embedding-ada-002", "text-embedding-3-small", "text-embedding-3-large")


def test_aliases_follow_the_default_embedding_model() -> None:
    names = {s.id for s in Registry.load().all()}
    if not {E5_SMALL, MINILM} <= names:
        pytest.skip("needs both embedded embedding models (make install)")
    for default in (E5_SMALL, MINILM):
        registry = Registry.load(default_embedding=default)
        assert {registry.get(a).id for a in EMBEDDING_NAMES} == {default}
        assert registry.default_embedding_model == default
    # an alias as the default means the built-in default, stored as a concrete id
    registry = Registry.load(default_embedding="text-embedding-3-small")
    assert registry.default_embedding_model == MINILM
    assert registry.get("gpt-4o-mini").id == "smollm2-135m-instruct"


def test_registry_file_entries_carry_prefixes_and_win_aliases(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    entry = {
        "id": "bge-small-zh",
        "kind": "embedding",
        "source": "/models/bge-small-zh",
        "query_prefix": "为这个句子生成表示以用于检索相关文章：",
    }
    path.write_text(
        json.dumps({"models": [entry], "aliases": {"text-embedding-3-large": "bge-small-zh"}}),
        encoding="utf-8",
    )
    registry = Registry.load(path, default_embedding="bge-small-zh")
    spec = registry.get("text-embedding-3-small")
    assert spec.id == "bge-small-zh" and spec.query_prefix.startswith("为这个句子")
    assert spec.passage_prefix == ""
    assert registry.get("text-embedding-3-large").id == "bge-small-zh"
    assert registry.default_embedding_model == "bge-small-zh"
