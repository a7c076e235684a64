"""The GGUF file llama.cpp loads for a registry model, prepared once in the model cache.

tunelab runs llama.cpp through the prebuilt library in gpt4all's wheel (PyPI has
no wheel of llama-cpp-python). That llama.cpp dates from mid-2024 and refuses
GGUF files whose tokenizer metadata names a pre-tokenizer it does not know yet,
among them "smollm", the one SmolLM2's GGUF names. llama.cpp splits "smollm" text
with exactly the regexes of "refact" (the two share one case in llama-vocab.cpp),
a name of the same length, so a copy of the file with those six bytes changed
loads there and tokenizes identically. The engine checks that anyway: every prompt
token llama.cpp decodes is compared with the ids tunelab counted.

The copy is made once per source file into `cache_dir/llamacpp/`
(tunelab.models.cachefiles: keyed by the source's identity, written atomically). A
file that needs no change is used in place.
The field is found by its exact bytes in the file's metadata (key length, key,
string type, value length): gguf's GGUFReader parses every token of the
vocabulary into numpy views first, seconds for a 49k-token vocabulary.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from tunelab.models.cachefiles import sources_key, written
from tunelab.models.registry import ModelSpec

PRE_TOKENIZER_KEY = b"tokenizer.ggml.pre"
# Pre-tokenizer names newer than gpt4all 2.8.2's llama.cpp -> a name of the same
# length that build knows and splits text with the same rules.
PRE_TOKENIZER_ALIASES = {b"smollm": b"refact"}
# The metadata (vocabulary included) comes first in a GGUF file, well within this.
METADATA_BYTES = 64 * 2**20
GGUF_STRING = 8  # the value type of a string field


def gguf_context_length(path: Path) -> int | None:
    """`<architecture>.context_length` from the file's metadata."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    arch = fields.get("general.architecture")
    if arch is None:
        return None
    name = bytes(arch.parts[arch.data[0]]).decode()
    length = fields.get(f"{name}.context_length")
    return int(length.parts[length.data[0]][0]) if length is not None else None


def pre_tokenizer(data: bytes) -> tuple[int, bytes] | None:
    """(offset, name) of the pre-tokenizer name in a GGUF file's first bytes."""
    key = struct.pack("<Q", len(PRE_TOKENIZER_KEY)) + PRE_TOKENIZER_KEY
    at = data.find(key + struct.pack("<I", GGUF_STRING))
    if at < 0:
        return None
    start = at + len(key) + 4 + 8
    (length,) = struct.unpack_from("<Q", data, start - 8)
    return start, data[start : start + length]


def llamacpp_gguf(spec: ModelSpec, cache_dir: Path) -> Path:
    """The path of `spec`'s GGUF file as gpt4all's llama.cpp can load it."""
    source = spec.gguf_path
    if source is None:
        raise ValueError(f"model '{spec.id}' has no gguf_file")
    target = cache_dir / "llamacpp" / f"{sources_key(source)}-{source.name}"
    if target.exists():
        return target
    with source.open("rb") as f:
        found = pre_tokenizer(f.read(METADATA_BYTES))
    alias = PRE_TOKENIZER_ALIASES.get(found[1]) if found else None
    if found is None or alias is None:
        return source
    with written(target) as temp:
        shutil.copyfile(source, temp)
        with temp.open("r+b") as f:
            f.seek(found[0])
            f.write(alias)
    return target
