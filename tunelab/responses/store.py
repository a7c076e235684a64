"""Stored responses (contract §16.1–16.2): `store`, `previous_response_id`,
retrieve, delete and `input_items`.

A response created with `store` (the default) is kept with its input items. A
later request naming it as `previous_response_id` continues the conversation:
the input and output items of the whole chain, oldest first, come before the
new input (instructions are not carried over: each request's own apply).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from tunelab.db.base import Base, Database, now
from tunelab.db.pagination import check_limit
from tunelab.errors import InvalidRequest, NotFound
from tunelab.ids import new_id
from tunelab.responses.items import as_chat

MAX_CHAIN = 1000  # responses followed back through previous_response_id


class StoredResponseRow(Base):
    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    input_items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the Response object as sent


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A request's `input` as items with ids, the way `input_items` lists them."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for item in value:
        if item.get("type", "message") != "message":  # function_call(_output): kept whole
            items.append({**item, "id": item.get("id") or new_id("fc_")})
            continue
        content = item.get("content")
        kind = "output_text" if item.get("role") == "assistant" else "input_text"
        if isinstance(content, str):
            content = [{"type": kind, "text": content}]
        items.append(
            {
                "id": item.get("id") or new_id("msg_"),
                "type": item.get("type", "message"),
                "role": item.get("role"),
                "content": content,
            }
        )
    return items


_CONVERSATION = ("message", "function_call", "function_call_output")


def as_messages(items: list[dict[str, Any]]) -> list[dict[str, object]]:
    """Conversation items (messages, function calls and their outputs) as chat
    messages; file_search_call items carry no conversation."""
    return as_chat([it for it in items if it.get("type", "message") in _CONVERSATION])


class ResponseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(
        self,
        project: str,
        body: dict[str, Any],
        items: list[dict[str, Any]],
        previous_response_id: str | None,
    ) -> None:
        with self.db.begin() as s:
            s.add(
                StoredResponseRow(
                    id=body["id"],
                    project=project,
                    created_at=int(body.get("created_at") or now()),
                    previous_response_id=previous_response_id,
                    input_items=items,
                    body=body,
                )
            )

    def _row(self, s: Session, project: str, response_id: str) -> StoredResponseRow | None:
        row = s.get(StoredResponseRow, response_id)
        return row if row is not None and row.project == project else None

    def get(self, project: str, response_id: str) -> dict[str, Any]:
        with self.db() as s:
            row = self._row(s, project, response_id)
            if row is None:
                raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
            return row.body

    def delete(self, project: str, response_id: str) -> None:
        with self.db.begin() as s:
            row = self._row(s, project, response_id)
            if row is None:
                raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
            s.delete(row)

    def list_input_items(
        self, project: str, response_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[dict[str, Any]], bool]:
        check_limit(limit, 100)
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
        with self.db() as s:
            row = self._row(s, project, response_id)
            if row is None:
                raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
            items = list(row.input_items)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [it["id"] for it in items]
            if after not in ids:
                raise InvalidRequest(f"No input item with id '{after}'.", param="after")
            items = items[ids.index(after) + 1 :]
        return items[:limit], len(items) > limit

    def history(self, project: str, previous_response_id: str) -> list[dict[str, object]]:
        """The chain's conversation, oldest first, as chat messages."""
        chain: list[StoredResponseRow] = []
        with self.db() as s:
            next_id: str | None = previous_response_id
            while next_id is not None and len(chain) < MAX_CHAIN:
                row = self._row(s, project, next_id)
                if row is None:
                    if not chain:
                        raise InvalidRequest(
                            f"Previous response with id '{previous_response_id}' not found.",
                            param="previous_response_id",
                            code="previous_response_not_found",
                        )
                    break  # an older link was deleted: the conversation starts after it
                chain.append(row)
                next_id = row.previous_response_id
        messages: list[dict[str, object]] = []
        for row in reversed(chain):
            messages += as_messages(row.input_items)
            messages += as_messages(row.body.get("output", []))
        return messages
