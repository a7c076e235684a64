"""Retrieval building blocks without a server: documents, chunking, filters, ranking, prompt."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tunelab.errors import InvalidRequest
from tunelab.models.registry import MINILM, Registry
from tunelab.retrieval.chunking import StaticStrategy, chunk_text
from tunelab.retrieval.documents import DocumentError, extract_text
from tunelab.retrieval.filters import matches, validate_filter
from tunelab.retrieval.grounding import Passage, build_grounded_messages, find_citations
from tunelab.retrieval.index import DenseIndex, StoreMatrix, keyword_terms, reciprocal_rank_fusion

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Registry.load().get(MINILM).source)


def test_clamp_keeps_the_overlap_ratio():
    assert StaticStrategy(800, 400).clamped(254) == StaticStrategy(254, 127)
    assert StaticStrategy(200, 50).clamped(254) == StaticStrategy(200, 50)


def test_chunks_fit_the_window_cover_the_text_and_are_source_slices(tokenizer):
    text = (DATA / "manual.md").read_text(encoding="utf-8")
    chunks = chunk_text(text, tokenizer, StaticStrategy().clamped(254))
    assert len(chunks) > 5
    for c in chunks:
        assert c.text == text[c.start : c.end]  # case and spacing preserved
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 254
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
    # Consecutive chunks overlap, and most end at a sentence or paragraph end.
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:]))
    assert sum(c.text.rstrip().endswith((".", ":")) for c in chunks) >= len(chunks) - 2


def test_chinese_without_spaces_is_chunked_at_sentence_ends(tokenizer):
    text = (DATA / "manual_zh.md").read_text(encoding="utf-8") * 3
    chunks = chunk_text(text, tokenizer, StaticStrategy(100, 20))
    assert len(chunks) > 3
    assert all(c.text == text[c.start : c.end] for c in chunks)
    # Every cut is at a sentence end or just before a heading, never mid-sentence.
    for a, b in zip(chunks, chunks[1:]):
        assert a.text[-1] in "。！？" or text[a.end :].lstrip().startswith("#"), a.text[-20:]


def test_gbk_text_and_formats_are_extracted():
    zh = (DATA / "manual_zh.md").read_text(encoding="utf-8")
    assert "恢复出厂设置" in extract_text("说明书.txt", zh.encode("gbk"))
    html = b"<html><head><style>p{}</style><script>var x</script></head><body><h1>Title</h1><p>Body text</p></body></html>"
    assert extract_text("a.html", html).split() == ["Title", "Body", "text"]
    assert "name: Widget\nprice: 3" in extract_text("a.json", b'[{"name": "Widget", "price": 3}]')
    assert "sku: A1\ncolor: red" in extract_text("a.csv", b"sku,color\nA1,red\nB2,blue\n")
    assert "q: hi" in extract_text("a.jsonl", b'{"q": "hi"}\n{"q": "yo"}\n')

    import docx

    document = docx.Document()
    document.add_paragraph("Hold the power button for fifteen seconds.")
    buf = io.BytesIO()
    document.save(buf)
    assert "fifteen seconds" in extract_text("a.docx", buf.getvalue())


def test_bad_documents_say_why():
    with pytest.raises(DocumentError) as e:
        extract_text("a.exe", b"MZ")
    assert e.value.code == "unsupported_file" and ".pdf" in e.value.message
    with pytest.raises(DocumentError, match="no text"):
        extract_text("a.md", b"  \n\n ")
    with pytest.raises(DocumentError, match="line 2|Line 2"):
        extract_text("a.jsonl", b'{"a": 1}\n{oops\n')

    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(DocumentError, match="encrypted"):
        extract_text("locked.pdf", buf.getvalue())


def test_filters():
    attrs = {"lang": "en", "version": 3, "public": True}
    cases = [
        ({"type": "eq", "key": "lang", "value": "en"}, True),
        ({"type": "ne", "key": "lang", "value": "en"}, False),
        ({"type": "gte", "key": "version", "value": 3}, True),
        ({"type": "lt", "key": "version", "value": 3}, False),
        ({"type": "gt", "key": "lang", "value": 1}, False),  # mixed types never order
        ({"type": "in", "key": "lang", "value": ["zh", "en"]}, True),
        ({"type": "nin", "key": "missing", "value": ["x"]}, True),
        ({"type": "eq", "key": "public", "value": True}, True),
        ({"type": "eq", "key": "version", "value": True}, False),  # bool is not a number
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "lang", "value": "en"},
                    {
                        "type": "or",
                        "filters": [
                            {"type": "lt", "key": "version", "value": 2},
                            {"type": "eq", "key": "public", "value": True},
                        ],
                    },
                ],
            },
            True,
        ),
    ]
    for f, expected in cases:
        validate_filter(f)
        assert matches(f, attrs) is expected, f
    with pytest.raises(InvalidRequest) as e:
        validate_filter({"type": "and", "filters": [{"type": "like", "key": "a", "value": 1}]})
    assert e.value.param == "filters.filters[0].type"


def test_keyword_terms_handle_english_and_chinese():
    long_terms, short = keyword_terms("How do I reset the R7 router? 如何恢复出厂设置")
    assert "reset" in long_terms and "router" in long_terms and "how" not in long_terms
    assert "出厂设" in long_terms and "恢复出" in long_terms
    assert keyword_terms("电池") == ([], ["电池"])


def test_dense_search_and_fusion():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(100, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    m = StoreMatrix(
        1,
        np.arange(100, dtype=np.int64) * 2,
        np.arange(100, dtype=np.int32) % 2,
        ["file-a", "file-b"],
        vecs,
    )
    hits = DenseIndex.search(m, vecs[10], 5)
    assert hits[0] == (20, pytest.approx(1.0, abs=1e-5))
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    only_b = DenseIndex.search(m, vecs[10], 5, m.mask({"file-b"}))
    assert all(m.file_of([cid])[0] == "file-b" for cid, _ in only_b)

    fused = reciprocal_rank_fusion([[1, 2, 3], [1, 3], []])
    assert fused[0] == (1, pytest.approx(1.0))
    assert [c for c, _ in fused] == [1, 3, 2] and all(0 < s <= 1 for _, s in fused)


def test_grounded_prompt_and_citations():
    passages = [
        Passage("file-a", "manual.md", "Charge with USB-C."),
        Passage("file-b", "faq.md", "Ten hours."),
    ]
    messages = build_grounded_messages("How long?", passages, "Be brief.")
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Be brief.")
    assert "[2] (faq.md)\nTen hours." in messages[1]["content"]
    assert messages[1]["content"].endswith("Question: How long?")
    cites = find_citations("It lasts ten hours [2]. See also [2] and [9].", 2)
    assert [(c.passage, c.index) for c in cites] == [(1, 19)]
    assert [c.passage for c in find_citations("No markers here.", 2)] == [0]
