"""Retrieval building blocks without a server: documents, chunking, filters, ranking, prompt."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest

from tunelab.errors import InvalidRequest
from tunelab.models.registry import MINILM, Registry
from tunelab.retrieval.chunking import StaticStrategy, chunk_text, document_header, fitted_header
from tunelab.retrieval.documents import DocumentError, extract_text
from tunelab.retrieval.filters import matches, validate_filter
from tunelab.retrieval.grounding import Passage, build_grounded_messages, find_citations
from tunelab.retrieval.index import DenseIndex, StoreMatrix, StorePostings
from tunelab.retrieval.language import StoreModels, mostly_latin
from tunelab.retrieval.ranking import (
    KEYWORD_WEIGHT,
    dense_scores,
    hybrid_scores,
    keyword_weight,
    spread_files,
)
from tunelab.retrieval.rewrite import rewrite_query
from tunelab.retrieval.terms import decode_terms, encode_terms, terms

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Registry.load().get(MINILM).source)


def test_clamp_keeps_the_overlap_ratio():
    assert StaticStrategy(800, 400).clamped(254) == StaticStrategy(254, 127)
    assert StaticStrategy(200, 50).clamped(254) == StaticStrategy(200, 50)
    assert StaticStrategy().clamped(254) == StaticStrategy(254, 127)  # `auto`


def test_chunks_fit_the_window_cover_the_text_and_are_source_slices(tokenizer):
    text = (DATA / "manual.md").read_text(encoding="utf-8")
    chunks = chunk_text(text, tokenizer, StaticStrategy(800, 400).clamped(254))
    assert len(chunks) > 5
    for c in chunks:
        assert c.text == text[c.start : c.end]  # case and spacing preserved
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 254
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
    # Consecutive chunks overlap, and most end at a sentence or paragraph end.
    assert all(b.start < a.end for a, b in itertools.pairwise(chunks))
    assert sum(c.text.rstrip().endswith((".", ":")) for c in chunks) >= len(chunks) - 2


def test_every_chunk_is_indexed_with_the_documents_name_and_title(tokenizer):
    man = "LS(1)      User Commands      LS(1)\n\nNAME\n       ls - list directory contents\n\n"
    assert document_header("ls.1.txt", man + "SYNOPSIS\n  ls [OPTION]...") == (
        "ls.1 \u2014 LS(1) User Commands LS(1) \u2014 ls - list directory contents\n\n"
    )
    zh = "BIFF(1)\n\n名称 (NAME)\n     biff — 新到邮件提醒\n\n总览\n  biff [ny]"
    dash = " \u2014 "
    assert document_header("biff.1.txt", zh) == f"biff.1{dash}BIFF(1){dash}biff — 新到邮件提醒\n\n"
    assert document_header("notes.md", "# Notes\n\nText.") == "notes \u2014 # Notes\n\n"
    # A long title is cut to a quarter of the window, and its tokens are counted.
    header, used = fitted_header("a.txt", "word " * 300, tokenizer, 100)
    assert used == 25 and header.endswith("\n\n")
    assert len(tokenizer(header, add_special_tokens=False)["input_ids"]) == 25


def test_chinese_without_spaces_is_chunked_at_sentence_ends(tokenizer):
    text = (DATA / "manual_zh.md").read_text(encoding="utf-8") * 3
    chunks = chunk_text(text, tokenizer, StaticStrategy(100, 20))
    assert len(chunks) > 3
    assert all(c.text == text[c.start : c.end] for c in chunks)
    # Every cut is at a sentence end or just before a heading, never mid-sentence.
    for a, _ in itertools.pairwise(chunks):
        assert a.text[-1] in "。！？" or text[a.end :].lstrip().startswith("#"), a.text[-20:]


def test_gbk_text_and_formats_are_extracted():
    zh = (DATA / "manual_zh.md").read_text(encoding="utf-8")
    assert "恢复出厂设置" in extract_text("说明书.txt", zh.encode("gbk"))
    html = (
        b"<html><head><style>p{}</style><script>var x</script></head>"
        b"<body><h1>Title</h1><p>Body text</p></body></html>"
    )
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
    with pytest.raises(DocumentError, match=r"line 2|Line 2"):
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


def test_terms_are_words_in_english_and_chinese():
    assert terms("How do I remove the Descaling agents?") == ["remove", "descaling", "agents"]
    # Chinese is segmented into words, long words also into the words inside them.
    assert terms("如何恢复出厂设置") == ["如何", "恢复", "出厂", "设置"]
    assert terms("检查文件系统") == ["检查", "文件", "系统", "文件系统"]
    assert terms("R7路由器") == ["r7", "路由", "路由器"]
    # Full-width letters and digits (common in Chinese text) are the ASCII ones.
    assert terms("ＵＳＢ接口３") == ["usb", "接口", "3"]
    # Kana and hangul, which jieba does not segment, become character bigrams.
    assert terms("コーヒー") == ["コー", "ーヒ", "ヒー"] and terms("ア") == ["ア"]


def postings(texts: list[str]) -> StorePostings:
    ids = np.arange(len(texts), dtype=np.int64) * 10
    return StorePostings.build(1, ids, [decode_terms(encode_terms(t)) for t in texts])


def test_bm25_prefers_rare_words_and_normalises_per_query():
    p = postings([
        "Remove the bean hopper by turning it anticlockwise.",
        "Descale the boiler every three months to remove limescale.",
        "The warranty lasts two years.",
        "Remove the drip tray and empty it.",
    ])  # fmt: skip
    rows, scores = p.scores("how often should I remove limescale")
    ranked = [int(p.chunk_ids[r]) for r in rows[np.argsort(-scores)]]
    assert ranked[0] == 10  # the only chunk with the rare word
    assert set(ranked) == {0, 10, 30}  # "remove" matches; the warranty chunk does not
    assert all(0 < s <= 1 for s in scores)
    # One common word of a three-word question is a small share of its weight.
    assert max(s for r, s in zip(rows, scores, strict=True) if r != 1) < 0.35
    # Matching every query word of an average chunk once scores (about) 1.
    full_rows, full = p.scores("warranty years")
    assert list(full_rows) == [2] and full[0] > 0.9
    assert p.scores("nothing matches xyzzy")[0].size == 0
    assert p.scores("")[0].size == 0


def test_a_stop_word_alone_matches_nothing():
    # scikit-learn's English stop words go, on both sides; the words of it that name
    # programs in documentation stay.
    assert terms("How often should I get every line?") == ["line"]
    assert terms("find files with less and top") == ["find", "files", "less", "top"]
    assert terms("the third column of two files") == ["third", "column", "two", "files"]
    p = postings([
        "Every morning the cron daemon wakes up.",
        "nl numbers the lines of a file.",
    ])  # fmt: skip
    # "every" was dropped at indexing and from the question: the cron chunk cannot
    # collect a match on it, only the chunk with the question's own word does.
    rows, _ = p.scores("put a number in front of every line")
    assert list(rows) == []
    rows, _ = p.scores("number every lines")
    assert list(rows) == [1]


def test_bm25_finds_chinese_words():
    p = postings(
        [
            "路由器的保修期为三年。",
            "忘记密码时，用针按住复位孔十秒恢复出厂设置。",
            "电池续航十小时。",
        ]
    )
    rows, _ = p.scores("保修多久")
    assert list(rows) == [0]
    rows, scores = p.scores("怎么恢复出厂设置")
    assert rows[np.argmax(scores)] == 1


def test_dense_search_and_hybrid_scores():
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

    # Dense: the model's floor maps to 0, an identical vector to 1.
    d = dense_scores(np.array([0.7, 0.85, 1.0, 0.2]), floor=0.7)
    assert d == pytest.approx([0.0, 0.5, 1.0, 0.0])
    # Hybrid is the convex combination, so it stays in [0, 1].
    h = hybrid_scores(np.array([1.0, 0.5, 0.0]), np.array([0.0, 1.0, 1.0]), 0.3)
    assert h == pytest.approx([0.7, 0.65, 0.3])


def greedy_spread(scores: np.ndarray, files: np.ndarray, k: int, decay: float) -> list[int]:
    """The definition spread_files computes faster: take the best, discount its file."""
    left = {i: float(v) for i, v in enumerate(scores) if v > 0}
    taken: dict[int, int] = {}
    out = []
    while left and len(out) < k:
        best = max(left, key=lambda i: (left[i] * decay ** taken.get(files[i], 0), -i))
        out.append(best)
        taken[files[best]] = taken.get(files[best], 0) + 1
        del left[best]
    return out


def test_spread_files_discounts_a_files_repeated_passages():
    # File 0's three near-duplicate chunks outscore file 1 and file 2 on their own.
    scores = np.array([0.90, 0.89, 0.88, 0.80, 0.70, 0.0], dtype=np.float32)
    files = np.array([0, 0, 0, 1, 2, 3])
    rows, ranked = spread_files(scores, files, 5, decay=0.7)
    assert rows.tolist() == [0, 3, 4, 1, 2]  # one passage per file first; file 3 scored 0
    assert np.allclose(ranked, [0.90, 0.80, 0.70, 0.89 * 0.7, 0.88 * 0.49])
    assert list(ranked) == sorted(ranked, reverse=True)  # results stay ordered by score
    # decay 1 is the plain ranking
    assert spread_files(scores, files, 3, decay=1.0)[0].tolist() == [0, 1, 2]
    assert spread_files(np.zeros(3), np.zeros(3, dtype=int), 3)[0].size == 0


def test_spread_files_matches_the_greedy_definition_on_large_stores():
    rng = np.random.default_rng(0)
    for n, n_files, k in ((50, 3, 10), (5000, 40, 10), (5000, 2000, 50), (300, 1, 7)):
        scores = rng.random(n).astype(np.float32)
        scores[rng.random(n) < 0.2] = 0  # chunks without evidence
        files = rng.integers(0, n_files, n)
        for decay in (0.7, 0.3):
            rows, _ = spread_files(scores, files, k, decay)
            assert rows.tolist() == greedy_spread(scores, files, k, decay), (n, n_files, decay)


def test_keywords_count_only_within_the_stores_script():
    # An English question over a Chinese store shares only stray option and file names
    # with it: hybrid is dense alone there, and the other way round.
    assert keyword_weight("how do I reset the router?", False) == 0.0
    assert keyword_weight("路由器怎么恢复出厂设置", True) == 0.0
    assert keyword_weight("how do I reset the router?", True) == KEYWORD_WEIGHT
    assert keyword_weight("tar 怎么解压文件", False) == KEYWORD_WEIGHT  # mostly Chinese
    # A store indexed before its script was recorded: keywords count, as they did.
    assert keyword_weight("路由器", None) == KEYWORD_WEIGHT
    assert hybrid_scores(np.array([0.3, 0.7]), np.array([1.0, 0.0]), 0.0).tolist() == [
        np.float32(0.3),
        np.float32(0.7),
    ]


def test_a_stores_model_follows_the_script_of_its_first_document():
    assert mostly_latin("Hold the reset button for ten seconds. Ça marche très bien.")
    assert mostly_latin("def f(x):\n    return x + 1  # 中文")  # the letters are mostly Latin
    assert mostly_latin("12345 --- 678")  # no letters: the default is as good as any
    assert not mostly_latin("按住复位按钮十秒钟，直到状态灯闪烁橙色。Wi-Fi 路由器")
    assert not mostly_latin("Нажмите кнопку сброса на десять секунд.")
    models = StoreModels("all-minilm-l6-v2", "multilingual-e5-small")
    assert models.at_creation == ""  # the first document decides
    assert models.for_text("The warranty lasts two years.") == "all-minilm-l6-v2"
    assert models.for_text("保修期为三年。") == "multilingual-e5-small"
    # Without a multilingual model, or when it is the default, every store gets the default.
    for fixed in (StoreModels("all-minilm-l6-v2"), StoreModels("e5", "e5")):
        assert fixed.at_creation == fixed.default == fixed.for_text("保修期为三年。")


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


@pytest.mark.parametrize(
    ("query", "searched"),
    [
        ("What is the return policy?", "return policy"),  # OpenAI's own example
        ("How do I make a file undeletable, even for root?", "make file undeletable root"),
        ('What does "tar -xzf" do with a .tar.gz?', "tar -xzf tar.gz"),  # names kept whole
        ("请问如何查看磁盘还剩多少空间？", "查看 磁盘 还 剩 多少 空间"),
        ("用ls命令列出文件", "用 ls 命令 列出 文件"),
        ("Is it?", "Is it?"),  # nothing left: searched as written
    ],
)
def test_rewrite_query_keeps_the_words_a_search_needs(query: str, searched: str) -> None:
    assert rewrite_query(query) == searched
