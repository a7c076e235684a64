"""The keyword terms of a text: what the BM25 keyword index counts and a query looks up.

A text is NFKC-normalised (full-width Latin and digits become ASCII) and lower-cased,
then split into runs of letters/digits and runs of CJK characters:

- a Latin (or any non-CJK) word is stemmed with the Snowball English stemmer
  ("removing" and "removes" -> "remov") unless it is one of a few very common
  English words, which are dropped;
- a CJK run becomes its overlapping character bigrams ("恢复出厂" -> 恢复 复出 出厂),
  or the character itself when the run is one character long. Chinese has no spaces
  and most words are two characters, so bigrams find every word of the query without
  a dictionary; on the Chinese man-page benchmark they rank as well as jieba's
  segmentation (docs/retrieval.md has the measurement) and also work for Japanese
  and Korean.

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
from functools import lru_cache

import numpy as np
import snowballstemmer

# Han, kana, hangul and the CJK compatibility ideographs.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_RUNS = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")

# Words so common that they say nothing about which passage answers a question.
# BM25's idf already gives them little weight; dropping them keeps posting lists
# short and stops a chunk full of "the" from collecting many small matches.
STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does doing for from had has have"
    " how i if in into is it its me my of on or our should so than that the their them"
    " then there these they this those to was we were what when where which who why will"
    " with would you your".split()
)

TERM_DTYPE = np.dtype([("term", "<u4"), ("tf", "<u2")])

_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def terms(text: str) -> list[str]:
    """The keyword terms of `text`, in order, repeats kept."""
    out: list[str] = []
    for run in _RUNS.findall(unicodedata.normalize("NFKC", text).lower()):
        if _IS_CJK.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
        elif run not in STOPWORDS:
            out.append(_stem(run))
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
