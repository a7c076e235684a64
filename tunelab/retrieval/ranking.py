"""How a chunk's score is computed for each ranker: one scale, [0, 1], for all three.

    dense    semantic similarity: the cosine between query and chunk, rescaled so that
             0 is what the model gives two unrelated texts (its `similarity_floor`)
             and 1 an identical vector: (cos - floor) / (1 - floor), clipped to
             [0, 1]. Embedding models differ a lot in their cosine ranges
             (multilingual-e5 puts unrelated texts near 0.7, MiniLM near 0); above
             their floors they land on comparable scales, so one keyword weight
             suits both. A passage deep inside a manual page ("-r, --recursive
             ...") rarely names what the page is about; every chunk is therefore
             indexed with its document's header (`chunking.document_header`: file
             name, title, NAME line). That replaced mixing DOCUMENT_WEIGHT of the
             score of the file's first chunk into each chunk's score: with headers
             the best weight on the development questions is 0.
    keyword  BM25 normalised per query (`index.StorePostings.scores`): roughly the
             share of the query's idf-weighted words that the chunk contains.
    hybrid   (1 - KEYWORD_WEIGHT) * dense + KEYWORD_WEIGHT * keyword, computed for
             every chunk of the store (not only the top of each list), so a chunk
             found by one side is still scored by the other. The weight is 0, and
             hybrid is exactly dense, for a query in another script than the store
             (`keyword_weight`): an English question over Chinese man pages shares
             with them only option and file names, and those matches cost answers
             that dense alone ranked in the first five (docs/retrieval.md). Scaling
             the weight by the share of the query's words found in the store was
             measured and rejected: such questions find most of their words there.

Whichever the ranker, a file's repeated passages are then discounted (`spread_files`:
its second-best chunk counts SAME_FILE_DECAY of its score, the third that squared...).
Overlapping chunks of one page are near-duplicates with near-equal scores; without
the discount they filled the first five results with one wrong page and pushed the
right page out (the main reason hybrid search lost to a naive baseline at hit@5).

A `score_threshold` therefore drops chunks whose (weighted) evidence is weak on the
same scale whichever ranker is used. DOCUMENT_WEIGHT, SAME_FILE_DECAY and
KEYWORD_WEIGHT were chosen on development questions kept apart from the reported
ones (benchmarks/questions/dev/, `benchmarks/ranking_dev.py`, best MRR; docs/retrieval.md
has the numbers), and the keyword weight is small enough that a chunk sharing one
common word with the question ("remove") cannot overtake one that means the same
thing (tests/test_vector_stores_api.py, tests/test_retrieval_units.py).
"""

from __future__ import annotations

import numpy as np

from tunelab.errors import InvalidRequest
from tunelab.retrieval.language import mostly_latin

KEYWORD_WEIGHT = 0.2
DOCUMENT_WEIGHT = 0.0
SAME_FILE_DECAY = 0.7

RANKERS = {
    "auto": "hybrid",
    "default-2024-11-15": "hybrid",
    "hybrid": "hybrid",
    "none": "dense",
    "dense": "dense",
    "keyword": "keyword",
}


def resolve_ranker(ranker: str | None) -> str:
    """The ranker a `ranking_options.ranker` value selects (None = the default)."""
    if ranker is None:
        return "hybrid"
    if ranker not in RANKERS:
        raise InvalidRequest(
            f"ranking_options.ranker must be one of {', '.join(RANKERS)}, not {ranker!r}.",
            param="ranking_options.ranker",
        )
    return RANKERS[ranker]


# Unrelated statements (topics, lengths and both languages mixed): the mean cosine
# between different ones is the model's similarity floor.
UNRELATED = [
    "The train to the airport leaves every twenty minutes from platform four.",
    "Whisk the eggs with sugar until the mixture turns pale and thick.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The quarterly report shows revenue grew by eight percent.",
    "Replace the printer cartridge when the warning light blinks.",
    "Our cat sleeps on the windowsill most afternoons.",
    "The treaty was signed in 1648 and ended thirty years of war.",
    "Use a torque wrench to tighten the wheel nuts evenly.",
    "明天上午十点在三楼会议室开会。",
    "这家餐厅的牛肉面味道很好，价格也便宜。",
    "请在使用前仔细阅读安全说明。",
    "长江是中国最长的河流。",
]


def similarity_floor(queries: np.ndarray, passages: np.ndarray) -> float:
    """Mean cosine between different texts of UNRELATED (embedded as queries and as
    passages, for models that prefix the two differently)."""
    sims = queries @ passages.T
    n = len(sims)
    return float((sims.sum() - np.trace(sims)) / (n * n - n))


def dense_scores(cosines: np.ndarray, floor: float) -> np.ndarray:
    """Cosines rescaled so unrelated texts score 0 and an identical vector 1."""
    span = max(1.0 - floor, 1e-6)
    return np.clip((cosines - floor) / span, 0.0, 1.0).astype(np.float32)


def with_document(dense: np.ndarray, first_rows: np.ndarray) -> np.ndarray:
    """Mix each chunk's dense score with that of its file's first chunk.

    first_rows[i] is the row of the first chunk of row i's file.
    """
    if DOCUMENT_WEIGHT == 0.0:
        return dense
    mixed: np.ndarray = (1.0 - DOCUMENT_WEIGHT) * dense + DOCUMENT_WEIGHT * dense[first_rows]
    return mixed.astype(np.float32)


def spread_files(
    scores: np.ndarray, file_codes: np.ndarray, k: int, decay: float = SAME_FILE_DECAY
) -> tuple[np.ndarray, np.ndarray]:
    """The k best rows once each file's repeated passages are discounted, and their scores.

    The j-th best chunk of a file (j = 0, 1, ...) scores decay**j times its own score,
    so a second passage of one page must be clearly better than the best passage of
    another page to come before it. Only positive scores take part. The result is
    what a greedy "take the best, then discount the rest of its file" would pick, in
    the same order, computed on the top of the raw ranking: a discounted score is never
    above the raw one, so once the k-th discounted score is at least the best raw score
    left out, nothing outside can enter.
    """
    positive = np.flatnonzero(scores > 0)
    if k <= 0 or len(positive) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    values = scores[positive]
    take = min(len(positive), 4 * k)
    while True:
        if take < len(positive):
            part = np.argpartition(-values, take)  # position `take`: the best left out
            top, left_out = part[:take], float(values[part[take]])
        else:
            top, left_out = np.arange(len(positive)), 0.0
        top = top[np.argsort(-values[top], kind="stable")]
        rows = positive[top]
        codes = file_codes[rows]
        # Rank of each row within its file: rows are in descending score order, so a
        # stable sort by file keeps that order inside each file.
        by_file = np.argsort(codes, kind="stable")
        sorted_codes = codes[by_file]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        repeat = np.empty(len(rows), dtype=np.int64)
        repeat[by_file] = np.arange(len(rows)) - group_start
        discounted = (scores[rows] * decay**repeat).astype(np.float32)
        best = np.argsort(-discounted, kind="stable")[:k]
        if take == len(positive) or discounted[best[-1]] >= left_out:
            return rows[best], discounted[best]
        take = min(len(positive), 4 * take)


def keyword_weight(query: str, store_latin: bool | None) -> float:
    """Hybrid's keyword weight for `query` over a store whose first document was (or
    was not) mostly Latin script: KEYWORD_WEIGHT, or 0 when the query is written in
    the other kind of script. None (a store indexed before its script was recorded):
    KEYWORD_WEIGHT."""
    if store_latin is None or mostly_latin(query) == store_latin:
        return KEYWORD_WEIGHT
    return 0.0


def hybrid_scores(
    dense: np.ndarray, keyword: np.ndarray, weight: float = KEYWORD_WEIGHT
) -> np.ndarray:
    """The convex combination of the two [0, 1] scores of every chunk."""
    return ((1.0 - weight) * dense + weight * keyword).astype(np.float32)
