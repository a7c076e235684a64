"""`rewrite_query`: a question rewritten as the words a search needs.

With `rewrite_query: true` OpenAI's vector store search rewrites a natural-language
query for search and returns what it searched for in `search_query` (its example:
"What is the return policy?" searched as "return policy"). Here the rewrite is
deterministic and needs no model: the query's words in their order, NFKC-normalised
and lower-cased, without the punctuation around them (inside a word it stays:
"tar.gz", "--strip-components"), without the English stop words the keyword
index drops (tunelab.retrieval.terms) and a few more words that frame a question
("does", "tell"), and, in Chinese (segmented by jieba), without question words and
particles (请问, 如何, 怎么, 什么, 吗, 呢, 的 ...). A query with nothing left is
searched as written. The rewritten text is what both the dense and the keyword
side rank, so a user sees in `search_query` exactly what was searched.
"""

from __future__ import annotations

import re
import unicodedata

import rjieba

from tunelab.retrieval.terms import STOPWORDS

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Punctuation around a word; inside one ("tar.gz", "--strip-components") it stays.
_EDGES = ".,;:!?\"'()[]{}<>`*，。？！；：、（）《》“”‘’…"

QUESTION_FRAMING = frozenset({"does", "did", "doing", "tell", "possible", "want", "wanna"})
_CHINESE_FRAMING = (
    "请问 请 如何 怎么 怎样 怎么样 什么 为什么 为何 哪些 哪个 哪里 哪儿 是否 能否 能 可以 "
    "可不可以 有没有 吗 呢 吧 啊 呀 嘛 的 地 得 了 着 过 是 我 我们 你 您 他 她 它 要 想 "
    "应该 该 一下 一个 这个 那个 这 那 和 与 及 或 在 把 被 让 给 会"
)
CHINESE_FRAMING = frozenset(_CHINESE_FRAMING.split())


def rewrite_query(query: str) -> str:
    """`query` as search words (see above); the query itself when none are left."""
    words: list[str] = []
    for token in unicodedata.normalize("NFKC", query).lower().split():
        pieces = rjieba.cut(token) if _HAN.search(token) else [token]
        for piece in pieces:
            word = piece.strip(_EDGES)
            if not word or not any(ch.isalnum() for ch in word):
                continue
            if _HAN.search(word):
                if word not in CHINESE_FRAMING:
                    words.append(word)
            elif word not in STOPWORDS and word not in QUESTION_FRAMING:
                words.append(word)
    return " ".join(words) or query
