"""OpenAI model names that client code hard-codes, and what they stand for here.

Code written for OpenAI names its model: `gpt-4o-mini`, a dated snapshot such as
`gpt-4o-2024-08-06`, `text-davinci-003` in a 2023 tutorial, `davinci` as a
legacy fine-tuning base, `text-embedding-3-small`. Each family below resolves to
the configured default model of its kind (contract §19); an exact alias in
models.json overrides any of them. The embedding families also say which of
OpenAI's tokenizers their token-array inputs use.
"""

from __future__ import annotations

import re
from typing import Literal

# Chat and completion names share the chat kind: one chat model serves both
# /v1/chat/completions and /v1/completions.
_CHAT = re.compile(
    r"""
    gpt-3\.5-turbo(-[\w.-]+)?               # gpt-3.5-turbo, -0125, -16k, -instruct, ...
    | gpt-[456](\.\d+)?(o)?(-[\w.-]+)?      # gpt-4-0613, gpt-4o-mini-2024-07-18, gpt-5.2-pro
    | chatgpt-4o-latest | codex-mini-latest
    | o\d(-mini|-preview|-pro)?(-\d{4}-\d{2}-\d{2})?   # o1, o1-mini-2024-09-12, o3, o4-mini
    | ada | babbage | curie | davinci      # legacy fine-tuning bases and completion models
    | (babbage|davinci)-002
    | text-(ada|babbage|curie|davinci)-00\d
    | (davinci|curie)-instruct-beta
    | code-davinci-002 | code-cushman-001 | (text|code)-davinci-edit-001
    """,
    re.VERBOSE,
)
# Current embedding models: their token arrays are cl100k_base ids.
_EMBED_CL100K = re.compile(r"text-embedding-(ada-002|3-small|3-large)")
# First-generation embedding names (replaced by ada-002 in 2024); their token ids
# came from a GPT-2-era vocabulary we do not carry.
_EMBED_LEGACY = re.compile(
    r"text-similarity-(ada|babbage|curie|davinci)-001"
    r"|text-search-(ada|babbage|curie|davinci)-(doc|query)-001"
    r"|code-search-(ada|babbage)-(code|text)-001"
)


def openai_kind(name: str) -> Literal["chat", "embedding"] | None:
    """The kind of model an OpenAI name stands for, or None if it is not one."""
    if _EMBED_CL100K.fullmatch(name) or _EMBED_LEGACY.fullmatch(name):
        return "embedding"
    if _CHAT.fullmatch(name):
        return "chat"
    return None


def token_encoding(name: str) -> str | None:
    """OpenAI's tokenizer for token-array inputs sent under this embedding name.

    'cl100k_base' for current embedding names; None when the ids are not OpenAI's
    (the name is not an OpenAI embedding name). Legacy first-generation names
    raise ValueError: their vocabulary is not available offline."""
    if _EMBED_CL100K.fullmatch(name):
        return "cl100k_base"
    if _EMBED_LEGACY.fullmatch(name):
        raise ValueError(name)
    return None
