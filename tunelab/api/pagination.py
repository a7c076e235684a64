"""OpenAI's list envelope: `{"object": "list", "data", "first_id", "last_id", "has_more"}`.

The query side (cursor paging, limits) is `tunelab.db.pagination`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def list_page(items: list[Any], has_more: bool = False) -> dict[str, Any]:
    data = [i.model_dump() if isinstance(i, BaseModel) else i for i in items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
