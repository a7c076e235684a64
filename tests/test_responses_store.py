"""Stored responses: save, retrieve, delete, input_items and conversation chains;
and the migration that creates this branch's tables matches their declarations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tunelab.batches.tables import BatchItem, BatchRow
from tunelab.db.base import Base, Database, make_engine, migrate
from tunelab.errors import InvalidRequest, NotFound
from tunelab.responses.store import ResponseStore, StoredResponseRow, input_items
from tunelab.settings import Settings
from tunelab.uploads import UploadPartRow, UploadRow

P = "proj"


pytestmark = pytest.mark.unit


@pytest.fixture
def store(settings: Settings) -> Iterator[ResponseStore]:
    migrate(settings.db_url)
    db = Database(settings.db_url)
    yield ResponseStore(db)
    db.dispose()


def body(rid: str, answer: str) -> dict:
    message = {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": answer, "annotations": []}],
    }
    return {"id": rid, "object": "response", "created_at": 1, "output": [message]}


def test_a_chain_replays_every_turn_in_order(store: ResponseStore) -> None:
    store.save(P, body("resp_1", "Paris."), input_items("Capital of France?"), None)
    turn2 = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "And Italy?"}]},
    ]
    store.save(P, body("resp_2", "Rome."), input_items(turn2), "resp_1")
    assert store.history(P, "resp_2") == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "And Italy?"},
        {"role": "assistant", "content": "Rome."},
    ]
    with pytest.raises(InvalidRequest) as e:
        store.history("other-project", "resp_2")
    assert e.value.param == "previous_response_id"
    assert e.value.code == "previous_response_not_found"


def test_a_chain_carries_function_calls_and_their_outputs(store: ResponseStore) -> None:
    call = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
            "name": "get_weather", "arguments": '{"city": "Paris"}'}  # fmt: skip
    first = {"id": "resp_1", "object": "response", "created_at": 1, "output": [call]}
    store.save(P, first, input_items("Weather in Paris?"), None)
    result = {"type": "function_call_output", "call_id": "call_1", "output": "21 C"}
    store.save(P, body("resp_2", "It is 21 C."), input_items([result]), "resp_1")
    assert store.history(P, "resp_2") == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "assistant", "content": "It is 21 C."},
    ]


def test_retrieve_delete_and_input_items(store: ResponseStore) -> None:
    items = input_items([{"role": "user", "content": f"q{i}"} for i in range(5)])
    store.save(P, body("resp_1", "a"), items, None)
    assert store.get(P, "resp_1")["id"] == "resp_1"
    first, more = store.list_input_items(P, "resp_1", after=None, limit=2, order="desc")
    assert [it["content"][0]["text"] for it in first] == ["q4", "q3"] and more
    rest, more = store.list_input_items(P, "resp_1", after=first[-1]["id"], limit=10, order="desc")
    assert [it["content"][0]["text"] for it in rest] == ["q2", "q1", "q0"] and not more
    assert all(it["id"].startswith("msg_") and it["type"] == "message" for it in items)
    store.delete(P, "resp_1")
    for call in (lambda: store.get(P, "resp_1"), lambda: store.delete(P, "resp_1")):
        with pytest.raises(NotFound):
            call()


def test_migration_creates_exactly_the_declared_tables(settings: Settings) -> None:
    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    mine = {
        t.__tablename__ for t in (BatchRow, BatchItem, UploadRow, UploadPartRow, StoredResponseRow)
    }
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = [d for d in diff if _table(d) in mine]
    assert ours == []


def _table(entry: object) -> str | None:
    """The table an alembic diff entry is about."""
    if isinstance(entry, list):  # column modifications come grouped
        entry = entry[0]
    assert isinstance(entry, tuple)
    op, target = entry[0], entry[1]
    if op.endswith("_table"):
        return str(target.name)
    if op.endswith(("_index", "_constraint")):
        return str(target.table.name)
    return str(entry[2])  # add_column / remove_column / modify_*: (op, schema, table, ...)
