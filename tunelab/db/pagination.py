"""Cursor paging over a SQL query: the storage side of OpenAI's list endpoints.

The SDK asks for the next page with `after=<id of the last item>` and stops when
`has_more` is false. Items are ordered by (created_at, id) so the cursor is stable
even when many objects share a second. The wire envelope is `api.pagination.list_page`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from tunelab.errors import InvalidRequest


def check_limit(limit: int, maximum: int, param: str = "limit") -> None:
    if not 1 <= limit <= maximum:
        raise InvalidRequest(f"limit must be between 1 and {maximum}, got {limit}.", param=param)


def paginate(
    session: Session,
    stmt: Select[Any],
    table: Any,
    *,
    after: str | None,
    limit: int,
    order: str = "desc",
    id_col: str = "id",
    created_col: str = "created_at",
) -> tuple[list[Any], bool]:
    """Run `stmt` (already filtered by project) one page at a time."""
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
    id_c, created_c = getattr(table, id_col), getattr(table, created_col)
    if after:
        # Looked up through `stmt`, so a cursor from another project is unknown here.
        cursor = session.execute(
            stmt.with_only_columns(created_c).where(id_c == after)
        ).scalar_one_or_none()
        if cursor is None:
            raise InvalidRequest(f"No object with id '{after}' to page after.", param="after")
        if order == "desc":
            stmt = stmt.where(or_(created_c < cursor, and_(created_c == cursor, id_c < after)))
        else:
            stmt = stmt.where(or_(created_c > cursor, and_(created_c == cursor, id_c > after)))
    if order == "desc":
        stmt = stmt.order_by(created_c.desc(), id_c.desc())
    else:
        stmt = stmt.order_by(created_c.asc(), id_c.asc())
    rows = list(session.execute(stmt.limit(limit + 1)).scalars())
    return rows[:limit], len(rows) > limit
