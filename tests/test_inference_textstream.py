"""Streaming text out of token ids: whole characters only, stop strings never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.inference.textstream import IncrementalDetokenizer, StopMatcher

pytestmark = pytest.mark.realmodel

TEXTS = [
    "你好，世界！今天天气很好。",
    "Emoji: 🎉👍🏽 and 👨‍👩‍👧 family, café, naïve",
    "混合 mixed 文本 with spaces  and\nnewlines 🚀",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_chat_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_chat_dir))  # the real SmolLM2 tokenizer


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_are_whole_characters_and_join_to_the_text(tokenizer, text: str) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text) // 3  # byte-level BPE really splits these characters
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.push(i) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text
    assert "" in deltas  # some tokens held back an unfinished character


def test_stop_string_across_token_boundaries_is_cut_and_never_emitted() -> None:
    matcher = StopMatcher(["STOP", "\n\n"])
    out, hits = [], []
    for piece in ["Hello S", "T", "O", "P world"]:
        text, hit = matcher.feed(piece)
        out.append(text)
        hits.append(hit)
    assert "".join(out) == "Hello " and hits == [False, False, False, True]
    assert out[0] == "Hello "  # "S" is held back: it may start "STOP"


def test_held_back_text_is_released_when_it_is_not_a_stop() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("a ST") == ("a ", False)
    assert matcher.feed("AR") == ("STAR", False)
    assert matcher.feed("S") == ("", False)
    assert matcher.flush() == "S"


def test_a_character_cut_off_at_the_end_is_dropped(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer("ok 🌟", add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer)
    text = (
        "".join(detok.push(i) for i in ids[:-1]) + detok.flush()
    )  # the emoji's last byte never came
    assert text == "ok "
