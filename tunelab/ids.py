"""Object ids in OpenAI's shapes (`file-…`, `ftjob-…`, `vs_…`): a prefix and random base62."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(n: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_id(prefix: str, n: int = 24) -> str:
    """new_id("file-") -> "file-3fQ…"; the prefix carries its own separator."""
    return prefix + random_token(n)
