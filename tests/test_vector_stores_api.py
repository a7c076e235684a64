"""Vector stores end to end through the official openai SDK, real MiniLM embeddings."""

from __future__ import annotations

import io
from pathlib import Path

import openai
import pytest

from tests.support import run_server, sdk
from tunelab.settings import Settings

pytestmark = pytest.mark.realmodel

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data"
MANUAL = (DATA / "manual.md").read_text(encoding="utf-8")
MANUAL_ZH = (DATA / "manual_zh.md").read_text(encoding="utf-8")
KEYS = "key-a:proj-a,key-b:proj-b"


def manual_pdf() -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4)
    y = 800
    for line in MANUAL.splitlines():
        line = line.replace("—", "-")
        while line:
            pdf.drawString(40, y, line[:95])
            line, y = line[95:], y - 14
            if y < 40:
                pdf.showPage()
                y = 800
        y -= 6
    pdf.save()
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_cache: Path):
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("vs") / "data", cache_dir=model_cache, api_keys=KEYS
    )
    with run_server(settings) as url:
        yield url, settings


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return sdk(server[0], "key-a")


@pytest.fixture(scope="module")
def manual_store(client):
    vs = client.vector_stores.create(name="manual", metadata={"team": "support"})
    md = client.vector_stores.files.upload_and_poll(
        vector_store_id=vs.id, file=("manual.md", MANUAL.encode())
    )
    pdf = client.vector_stores.files.upload_and_poll(
        vector_store_id=vs.id, file=("manual.pdf", manual_pdf())
    )
    assert md.status == pdf.status == "completed", (md.last_error, pdf.last_error)
    return vs.id, md.id, pdf.id


PARAPHRASES = [
    ("How much liquid fits in the reservoir?", "2.1 litres"),
    ("How do I remove limescale from the machine?", "descaling agent"),
    ("The display shows E1, what is wrong?", "pump cannot draw water"),
    ("How long is the guarantee?", "two-year limited warranty"),
    ("How do I froth milk for a cappuccino?", "stretch the milk"),
    ("How do I throw away the old machine?", "collection point"),
]


def test_paraphrased_questions_find_their_section_in_markdown_and_pdf(client, manual_store):
    vs_id, md_id, pdf_id = manual_store
    missed = []
    for question, answer in PARAPHRASES:
        page = client.vector_stores.search(vs_id, query=question, max_num_results=4)
        assert page.data, question
        scores = [r.score for r in page.data]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        texts = [" ".join(r.content[0].text.split()) for r in page.data]
        if not any(answer in t for t in texts):
            missed.append(question)
        assert {r.file_id for r in page.data} <= {md_id, pdf_id}
        assert page.data[0].filename in ("manual.md", "manual.pdf")
        # Chunks are indexed with a document header, but the text returned is the
        # document's own text alone.
        assert all(r.content[0].text in MANUAL for r in page.data if r.file_id == md_id)
    # Questions share few words with the text: MiniLM + keywords find nearly all.
    assert len(missed) <= 1, missed


def test_rewrite_query_searches_the_question_s_words_and_says_so(client, manual_store):
    vs_id = manual_store[0]
    question = "How do I remove limescale from the machine?"
    for rewrite, searched in ((False, question), (True, "remove limescale machine")):
        raw = client.vector_stores.with_raw_response.search(
            vs_id, query=question, rewrite_query=rewrite, max_num_results=4
        )
        assert raw.http_response.json()["search_query"] == [searched]
        texts = [" ".join(hit.content[0].text.split()) for hit in raw.parse().data]
        assert any("descaling agent" in t for t in texts), (rewrite, texts)
    raw = client.vector_stores.with_raw_response.search(
        vs_id, query=["How long is the guarantee?", "机器的保修期是多久？"], rewrite_query=True
    )  # each query of a list; Chinese question words and particles dropped
    assert raw.http_response.json()["search_query"] == ["long guarantee", "机器 保修期 多久"]


def test_store_object_counts_and_content(client, manual_store):
    vs_id, md_id, _ = manual_store
    vs = client.vector_stores.retrieve(vs_id)
    assert vs.status == "completed" and vs.metadata == {"team": "support"}
    assert vs.file_counts.completed == 2 and vs.file_counts.in_progress == 0
    assert vs.usage_bytes > len(MANUAL)
    content = client.vector_stores.files.content(file_id=md_id, vector_store_id=vs_id)
    text = "".join(part.text for part in content)
    assert "Brewmaster K2" in text and "collection point" in text
    assert vs_id in [s.id for s in client.vector_stores.list()]
    listed = client.vector_stores.files.list(vector_store_id=vs_id, filter="completed")
    assert {f.id for f in listed} == {md_id, manual_store[2]}


def test_rankers_and_score_threshold(client, manual_store):
    vs_id = manual_store[0]
    q = "What does E4 mean?"
    for ranker in ("auto", "none", "keyword"):
        page = client.vector_stores.search(
            vs_id, query=q, ranking_options={"ranker": ranker}, max_num_results=3
        )
        assert "E4 means" in page.data[0].content[0].text, ranker
    strict = client.vector_stores.search(
        vs_id, query=q, ranking_options={"ranker": "none", "score_threshold": 0.99}
    )
    assert strict.data == []
    with pytest.raises(openai.BadRequestError) as e:
        client.vector_stores.search(vs_id, query=q, ranking_options={"ranker": "bogus"})
    assert e.value.body["param"] == "ranking_options.ranker"


# A small manual, one section per file, as a support knowledge base is often kept.
SECTIONS = {
    "descaling.md": "# Descaling\n\nHard water leaves mineral deposits in the boiler and the "
    "pipes. Run the descaling programme every three months, or every month if your water "
    "is very hard, with one sachet of descaling agent dissolved in a litre of water.",
    "hopper.md": "# Bean hopper\n\nTo remove the bean hopper, turn it anticlockwise until "
    "the arrow points at the open padlock and lift it off. Empty the beans into an airtight "
    "tin before you remove it.",
    "milk.md": "# Milk system\n\nPurge the steam wand after every drink and wipe it with a "
    "damp cloth so that milk does not dry on it.",
    "warranty.md": "# Warranty\n\nThe machine has a two-year limited warranty from the "
    "date of purchase; keep the receipt.",
}


def test_a_lone_common_word_does_not_outvote_meaning(client):
    """The question shares only "remove" with the hopper section and no word with the
    descaling one: keyword evidence that thin must not beat the semantic match."""
    vs = client.vector_stores.create(name="lone-word")
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=vs.id, files=[(name, text.encode()) for name, text in SECTIONS.items()]
    )
    assert batch.file_counts.completed == len(SECTIONS)
    for ranker in ("auto", "hybrid", "dense"):
        page = client.vector_stores.search(
            vs.id,
            query="how often should I remove limescale",
            ranking_options={"ranker": ranker},
        )
        assert [r.filename for r in page.data[:1]] == ["descaling.md"], ranker
    # The keyword ranker alone only has the common word to go on.
    page = client.vector_stores.search(
        vs.id, query="how often should I remove limescale", ranking_options={"ranker": "keyword"}
    )
    assert [r.filename for r in page.data] == ["hopper.md"]


def test_attribute_filters_and_updates(client):
    vs = client.vector_stores.create(name="filters")
    a = client.files.create(
        file=("a.md", b"# Model A\n\nThe Model A kettle boils water in three minutes."),
        purpose="assistants",
    )
    b = client.files.create(
        file=("b.md", b"# Model B\n\nThe Model B kettle boils water in ninety seconds."),
        purpose="assistants",
    )
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=vs.id,
        files=[
            {"file_id": a.id, "attributes": {"model": "A", "year": 2023}},
            {"file_id": b.id, "attributes": {"model": "B", "year": 2025}},
        ],
    )
    assert batch.status == "completed" and batch.file_counts.completed == 2
    assert {
        f.id for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=vs.id)
    } == {a.id, b.id}

    def found(filters):
        page = client.vector_stores.search(
            vs.id, query="how fast does the kettle boil", filters=filters
        )
        return {r.file_id for r in page.data}

    assert found({"type": "eq", "key": "model", "value": "A"}) == {a.id}
    assert found({"type": "gte", "key": "year", "value": 2024}) == {b.id}
    assert found(
        {
            "type": "or",
            "filters": [
                {"type": "eq", "key": "model", "value": "A"},
                {"type": "gt", "key": "year", "value": 2024},
            ],
        }
    ) == {a.id, b.id}
    client.vector_stores.files.update(
        file_id=a.id, vector_store_id=vs.id, attributes={"model": "C", "year": 2026}
    )
    assert found({"type": "gte", "key": "year", "value": 2024}) == {a.id, b.id}
    with pytest.raises(openai.BadRequestError) as e:
        found({"type": "like", "key": "model", "value": "A"})
    assert e.value.body["param"] == "filters.type"


def test_cancel_batch_and_expiry(client):
    vs = client.vector_stores.create(
        name="cancel", expires_after={"anchor": "last_active_at", "days": 7}
    )
    assert vs.expires_at == vs.last_active_at + 7 * 86400 and vs.expires_after.days == 7
    ids = [
        # ~6 chunks each: far more than can be embedded before the cancel arrives.
        client.files.create(
            file=(f"n{i}.md", f"Note {i}: {MANUAL[i * 100 : i * 100 + 6000]}".encode()),
            purpose="assistants",
        ).id
        for i in range(6)
    ]
    batch = client.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=ids)
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=vs.id)
    assert cancelled.status == "cancelled" and cancelled.file_counts.in_progress == 0
    counts = cancelled.file_counts
    assert counts.cancelled + counts.completed == counts.total == 6 and counts.cancelled > 0
    # Cancelled files never reach the index, even if they were mid-ingestion.
    done = client.vector_stores.file_batches.poll(batch.id, vector_store_id=vs.id)
    assert done.file_counts == counts
    cancelled_ids = {
        f.id for f in client.vector_stores.files.list(vector_store_id=vs.id, filter="cancelled")
    }
    hits = client.vector_stores.search(vs.id, query="espresso machine", max_num_results=50).data
    assert cancelled_ids and not cancelled_ids & {h.file_id for h in hits}
    updated = client.vector_stores.update(vs.id, expires_after=None, name="renamed")
    assert updated.expires_after is None and updated.name == "renamed"


def test_deleting_a_file_removes_its_chunks_from_search(client):
    vs = client.vector_stores.create(name="delete")
    f = client.vector_stores.files.upload_and_poll(
        vector_store_id=vs.id,
        file=("zebra.md", b"Zebras are striped horses of the African savanna."),
    )
    assert (
        client.vector_stores.search(vs.id, query="striped savanna animals").data[0].file_id == f.id
    )
    client.files.delete(f.id)
    assert client.vector_stores.search(vs.id, query="striped savanna animals").data == []
    assert client.vector_stores.retrieve(vs.id).file_counts.total == 0


def test_failed_files_say_why(client):
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    locked = io.BytesIO()
    writer.write(locked)
    vs = client.vector_stores.create(name="bad")
    cases = {
        "locked.pdf": (locked.getvalue(), "encrypted"),
        "tool.exe": (b"MZ\x00", "cannot be added"),
        "empty.md": (b"   \n", "no text"),
    }
    for name, (data, why) in cases.items():
        f = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=(name, data))
        assert f.status == "failed" and why in f.last_error.message, (name, f.last_error)
    assert client.vector_stores.retrieve(vs.id).file_counts.failed == 3


def test_chinese_document_utf8_and_gbk(client):
    vs = client.vector_stores.create(name="中文")
    for name, data in (
        ("说明书.md", MANUAL_ZH.encode()),
        ("说明书-gbk.txt", MANUAL_ZH.encode("gbk")),
    ):
        f = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=(name, data))
        assert f.status == "completed", f.last_error
        page = client.vector_stores.search(vs.id, query="忘记密码怎么恢复出厂设置")
        assert any("复位孔" in r.content[0].text for r in page.data[:2])
    short = client.vector_stores.search(vs.id, query="保修", ranking_options={"ranker": "keyword"})
    assert "三年保修" in short.data[0].content[0].text


def test_other_projects_get_404(client, server, manual_store):
    other = sdk(server[0], "key-b")
    vs_id, md_id, _ = manual_store
    for call in (
        lambda: other.vector_stores.retrieve(vs_id),
        lambda: other.vector_stores.search(vs_id, query="battery"),
        lambda: other.vector_stores.files.list(vector_store_id=vs_id),
        lambda: other.vector_stores.files.retrieve(file_id=md_id, vector_store_id=vs_id),
        lambda: other.vector_stores.delete(vs_id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert vs_id not in [s.id for s in other.vector_stores.list()]
    # Nor can project B attach project A's file to its own store.
    mine = other.vector_stores.create(name="b")
    with pytest.raises(openai.NotFoundError):
        other.vector_stores.files.create(vector_store_id=mine.id, file_id=md_id)


def test_bad_requests_name_the_field(client, manual_store):
    vs_id = manual_store[0]
    with pytest.raises(openai.BadRequestError) as e:
        client.vector_stores.search(vs_id, query="x", max_num_results=51)
    assert e.value.body["param"] == "max_num_results"
    with pytest.raises(openai.BadRequestError) as e:
        client.vector_stores.create(
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0},
            }
        )
    assert "max_chunk_size_tokens" in e.value.body["param"]


def test_index_survives_a_restart_and_store_delete(server, manual_store):
    _, settings = server
    vs_id = manual_store[0]
    # A second server process on the same data dir sees the persisted index.
    with run_server(settings) as url:
        again = sdk(url, "key-a")
        page = again.vector_stores.search(vs_id, query="What pressure does the pump produce?")
        assert "15 bar" in page.data[0].content[0].text
        deleted = again.vector_stores.delete(vs_id)
        assert deleted.deleted is True
        with pytest.raises(openai.NotFoundError):
            again.vector_stores.retrieve(vs_id)
