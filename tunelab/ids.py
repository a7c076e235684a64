"""Object ids in OpenAI's shapes (`file-…`, `ftjob-…`, `vs_…`).

The body starts with the creation time in microseconds (10 base36 characters,
digits and lowercase letters so that byte order and common database collations
agree), then random characters. Ids therefore sort in creation order, which keeps
cursor pagination stable when many objects share the same `created_at` second.
"""

from __future__ import annotations

import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits
_B36 = string.digits + string.ascii_lowercase


def random_token(n: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _time_part() -> str:
    us = time.time_ns() // 1000
    out = []
    for _ in range(10):
        us, r = divmod(us, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def new_id(prefix: str, n: int = 24) -> str:
    """new_id("file-") -> "file-" + 10 time characters + n-10 random ones."""
    return prefix + _time_part() + random_token(max(n - 10, 6))
