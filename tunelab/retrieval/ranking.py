"""How a chunk's score is computed for each ranker: one scale, [0, 1], for all three.

    dense    semantic similarity: the cosine between query and chunk, rescaled so that
             0 is what the model gives two unrelated texts (its `similarity_floor`)
             and 1 an identical vector: (cos - floor) / (1 - floor), clipped to
             [0, 1]. Embedding models differ a lot in their cosine ranges
             (multilingual-e5 puts unrelated texts near 0.7, MiniLM near 0); above
             their floors they land on comparable scales, so one keyword weight
             suits both. A chunk is also judged by its document's opening: the
             score mixes in DOCUMENT_WEIGHT of the score of the file's first chunk
             (title, summary), because a passage deep inside a manual page ("-r,
             --recursive ...") rarely names what the page is about.
    keyword  BM25 normalised per query (`index.StorePostings.scores`): roughly the
             share of the query's idf-weighted words that the chunk contains.
    hybrid   (1 - KEYWORD_WEIGHT) * dense + KEYWORD_WEIGHT * keyword, computed for
             every chunk of the store (not only the top of each list), so a chunk
             found by one side is still scored by the other.

A `score_threshold` therefore drops chunks whose (weighted) evidence is weak on the
same scale whichever ranker is used. KEYWORD_WEIGHT was chosen on the development
questions (benchmarks/questions/dev/, `benchmarks/ranking_dev.py`): it is the weight
that maximised mean MRR over the corpora and both embedding models, and it is small
enough that a chunk sharing one common word with the question ("remove") cannot
overtake one that means the same thing (see tests/test_retrieval_units.py).
"""

from __future__ import annotations

import numpy as np

from tunelab.errors import InvalidRequest

KEYWORD_WEIGHT = 0.15
DOCUMENT_WEIGHT = 0.2

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
    mixed: np.ndarray = (1.0 - DOCUMENT_WEIGHT) * dense + DOCUMENT_WEIGHT * dense[first_rows]
    return mixed.astype(np.float32)


def hybrid_scores(
    dense: np.ndarray, keyword: np.ndarray, weight: float = KEYWORD_WEIGHT
) -> np.ndarray:
    """The convex combination of the two [0, 1] scores of every chunk."""
    return ((1.0 - weight) * dense + weight * keyword).astype(np.float32)
