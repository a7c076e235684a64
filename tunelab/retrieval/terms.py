"""The keyword terms of a text: what the BM25 keyword index counts and a query looks up.

A text is NFKC-normalised (full-width Latin and digits become ASCII) and lower-cased,
then split into runs of letters/digits, of Chinese characters and of kana/hangul:

- a Latin (or any other non-CJK) word is a term, unless it is an English stop word
  (STOPWORDS), which is dropped;
- a Chinese run is segmented into words by jieba's search mode (rjieba, the Rust
  port: same dictionary and output, ~30x faster), which also emits the shorter words
  inside long ones ("文件系统" -> 文件 系统 文件系统);
- a kana or hangul run becomes its overlapping character bigrams.

Measured on the development questions (docs/retrieval.md): jieba's words rank
Chinese pages better than character bigrams (keyword-only MRR 0.57 vs 0.43), and
English stemming (Snowball) made keyword ranking worse (0.29 vs 0.35), so words are
kept as written.

Terms are stored per chunk as (crc32 of the term, count) pairs: 6 bytes per
distinct term, so a store's keyword index loads from the database as one array
(`encode_terms` / `decode_terms`). Two terms sharing a 32-bit hash would be counted
as one; in a store with 10^5 distinct terms that happens to a given query term with
probability ~2e-5, far below anything the ranking could notice.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter

import numpy as np
import rjieba
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA_HANGUL = "\u3040-\u30ff\uac00-\ud7af"
_RUNS = re.compile(rf"[{_HAN}]+|[{_KANA_HANGUL}]+|[^\W_{_HAN}{_KANA_HANGUL}]+")
_IS_HAN = re.compile(rf"[{_HAN}]")
_IS_KANA_HANGUL = re.compile(rf"[{_KANA_HANGUL}]")

# Words that say nothing about which passage answers a question: scikit-learn's
# English stop-word list (318 words; the one `TfidfVectorizer(stop_words="english")`
# uses), less two kinds of its words that do say something in documentation: those
# that name programs or technical things ("find", "less", "top", "last", "more",
# "system", "name", "empty", "fill", "call"), and numbers ("the third column", "two
# files"). A dropped word is dropped from chunks (ingestion) and from queries alike,
# so a question never matches a passage on "every" or "get" alone.
KEPT_STOPWORDS = frozenset(
    {"find", "less", "top", "last", "more", "system", "name", "empty", "fill", "call"}
    | {"one", "two", "three", "four", "five", "six", "eight", "nine", "ten", "eleven"}
    | {"twelve", "fifteen", "twenty", "forty", "fifty", "sixty", "hundred", "first", "third"}
)
STOPWORDS = frozenset(ENGLISH_STOP_WORDS) - KEPT_STOPWORDS

TERM_DTYPE = np.dtype([("term", "<u4"), ("tf", "<u2")])


def terms(text: str) -> list[str]:
    """The keyword terms of `text`, in order, repeats kept."""
    out: list[str] = []
    for run in _RUNS.findall(unicodedata.normalize("NFKC", text).lower()):
        if _IS_HAN.match(run):
            out.extend(rjieba.cut_for_search(run))
        elif _IS_KANA_HANGUL.match(run):
            out.extend(run[i : i + 2] for i in range(max(len(run) - 1, 1)))
        elif run not in STOPWORDS:
            out.append(run)
    return out


def term_hash(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


def term_counts(text: str) -> np.ndarray:
    """(term hash, count) of each distinct term of `text`, as a TERM_DTYPE array."""
    counts = Counter(term_hash(t) for t in terms(text))
    out = np.empty(len(counts), dtype=TERM_DTYPE)
    out["term"] = list(counts)
    out["tf"] = np.minimum(list(counts.values()), np.iinfo(np.uint16).max) if counts else []
    return out


def encode_terms(text: str) -> bytes:
    """What `vector_store_chunks.keyword_terms` holds for a chunk of `text`."""
    return term_counts(text).tobytes()


def decode_terms(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=TERM_DTYPE)


def query_terms(query: str) -> list[int]:
    """The distinct term hashes of a query (a repeated word counts once)."""
    return list(dict.fromkeys(term_hash(t) for t in terms(query)))
