"""Choose the ranking constants on the development questions (in-process, no server).

For each corpus (benchmarks/corpora.py), embedding model and chunking setting, the
documents are extracted and chunked exactly as ingestion does (tunelab's
extract_text and chunk_text), embedded with the model (cached under the cache
directory), and the development questions (benchmarks/questions/dev/) are ranked
with tunelab's own dense, keyword, fusion and same-file discount functions. Prints
hit@1 / hit@5 / MRR for a sweep of keyword weights (optionally scaled by the query's
coverage to a power, see `coverage`), document weights and same-file
discounts (and dense normalisations with --norms), for each chunk size; --script 1
ranks a question written in another script than the corpus's first document by dense
alone, as the server does (`ranking.keyword_weight`), --script 0 never does;
--rewrite 1 searches each question as tunelab.retrieval.rewrite rewrites it, 2 as
written and rewritten (each chunk keeping its best score, as for a list of queries).
`benchmarks/retrieval.py` then reports the chosen defaults on the other questions
through the API.

    .venv/bin/python benchmarks/ranking_dev.py [--models all-minilm-l6-v2] \
        [--chunks 800/400,254/0] [--weights 0,0.1,0.15,0.2] [--doc 0.2,0.3]
        [--decay 1,0.7] [--powers 0,1] [--script 0,1] [--split dev|report] [--pages N]
        [--rerank upr:5,uprchat:10,e5:5 --mix 0.25,0.5,1] [--rewrite 0,1]

--rerank re-orders the hybrid's top k with a second opinion (benchmarks/rerank.py:
SmolLM2 query likelihood, plain or chat prompt, or e5's cosine), mixed with the
hybrid score at each --mix weight (1 = the re-ranker alone); one row per
(re-ranker, weight), one column per keyword weight as above.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from corpora import Corpus, build
from rerank import SCORERS, Scorer, reorder

from tunelab.models.registry import Registry
from tunelab.retrieval import terms as term_module
from tunelab.retrieval.chunking import StaticStrategy, chunk_text, fitted_header
from tunelab.retrieval.documents import extract_text
from tunelab.retrieval.index import StorePostings
from tunelab.retrieval.language import mostly_latin
from tunelab.retrieval.ranking import (
    UNRELATED,
    dense_scores,
    hybrid_scores,
    similarity_floor,
    spread_files,
)
from tunelab.retrieval.rewrite import rewrite_query
from tunelab.retrieval.terms import decode_terms, encode_terms, query_terms

# Stop-word lists to compare (--stop): tunelab's, scikit-learn's whole list, and the
# short hand-written list used before it.
_OLD_STOPWORD_TEXT = """
a an and are as at be been but by can could did do does doing for from had has have how i
if in into is it its me my of on or our should so than that the their them then there these
they this those to was we were what when where which who why will with would you your
"""
OLD_STOPWORDS = frozenset(_OLD_STOPWORD_TEXT.split())
STOPLISTS = {
    "tunelab": term_module.STOPWORDS,
    "sklearn": term_module.STOPWORDS | term_module.KEPT_STOPWORDS,
    "old": OLD_STOPWORDS,
}

CACHE = Path.home() / ".cache" / "tunelab-bench"


@dataclass
class Indexed:
    pages: np.ndarray  # page number of each chunk
    names: list[str]
    matrix: np.ndarray
    postings: StorePostings
    texts: list[str]  # each chunk's text
    latin: bool  # whether the first document is mostly Latin script (the store's script)


def load_model(model_id: str):  # type: ignore[no-untyped-def]
    from tunelab.models.loading import load_sentence_transformer

    spec = Registry.load().get(model_id)
    model = load_sentence_transformer(spec, CACHE / "models")
    return model, getattr(spec, "query_prefix", ""), getattr(spec, "passage_prefix", "")


def pages_key(corpus: Corpus) -> str:
    """Names the corpus's pages in cache keys (a --pages run has vectors of its own)."""
    names = "\n".join(d.name for d in corpus.documents).encode()
    return f"-p{len(corpus.documents)}-{hashlib.sha256(names).hexdigest()[:8]}"


def index(
    corpus: Corpus, model_id: str, model, prefix: str, size: int, overlap: int, header: bool
) -> Indexed:  # type: ignore[no-untyped-def]
    """The corpus chunked and embedded as ingestion does (`header`: with each
    document's `document_header` in front of every chunk's indexed text)."""
    tok = model.tokenizer
    # As ingestion clamps: the window less the special tokens and the passage prefix.
    prefix_tokens = (
        len(tok(prefix.rstrip(), add_special_tokens=False)["input_ids"]) if prefix else 0
    )
    window = model.max_seq_length - prefix_tokens - tok.num_special_tokens_to_add()
    texts, pages = [], []
    for n, doc in enumerate(corpus.documents):
        text = extract_text(doc.filename, doc.data)
        head, used = fitted_header(doc.filename, text, tok, window) if header else ("", 0)
        room = window - used
        strategy = StaticStrategy(size, overlap).clamped(room)
        for c in chunk_text(text, tok, strategy):
            texts.append(head + c.text)
            pages.append(n)
    strategy = StaticStrategy(size, overlap).clamped(window)
    size, overlap = strategy.max_tokens, strategy.overlap_tokens
    subset = pages_key(corpus)
    key = f"{corpus.name.removesuffix('-xl')}{subset}-{model_id}-{size}-{overlap}"
    key += "-h" if header else ""
    path = CACHE / "vectors" / f"{key}.npy"
    if path.exists():
        matrix = np.load(path)
    else:
        t = time.perf_counter()
        matrix = model.encode(
            [prefix + x for x in texts], batch_size=64, normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float32)  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, matrix)
        print(f"  embedded {len(texts)} chunks of {key} in {time.perf_counter() - t:.0f} s")
    postings = keyword_postings(texts)
    if len(matrix) != len(texts):
        raise SystemExit(f"{path} holds {len(matrix)} vectors for {len(texts)} chunks: delete it")
    names = [d.name for d in corpus.documents]
    latin = mostly_latin(extract_text(corpus.documents[0].filename, corpus.documents[0].data))
    return Indexed(np.array(pages), names, matrix, postings, texts, latin)


def keyword_postings(texts: list[str]) -> StorePostings:
    """BM25 postings of the chunks' texts under the current stop-word list."""
    ids = np.arange(len(texts), dtype=np.int64)
    return StorePostings.build(0, ids, [decode_terms(encode_terms(x)) for x in texts])


def query_coverage(postings: StorePostings, query: str) -> float:
    """The share of the query's idf-weighted terms that occur in the store at all.

    A candidate for a query-adaptive keyword weight (weight x coverage**p): an
    English question over Chinese pages was expected to share few words with them.
    Measured on the development questions it does not separate them well (man pages
    in Chinese keep their option, file and program names in English), and no power
    beat the fixed weight (docs/retrieval.md), so the server does not use it.
    """
    n = len(postings.chunk_ids)
    full = found = 0.0
    for h in query_terms(query):
        lo, hi = np.searchsorted(postings.terms, [h, h + 1])
        idf = math.log(1 + (n - (hi - lo) + 0.5) / (hi - lo + 0.5))
        full += idf
        found += idf if hi > lo else 0.0
    return found / full if full else 0.0


def evaluate(
    ix: Indexed, corpus: Corpus, queries: np.ndarray, split: str,
    rank: Callable[[np.ndarray, np.ndarray, float], np.ndarray], floor: float | None,
    doc: float, decay: float, rerank: tuple[Scorer, int, float] | None = None,
    script: bool = False, searched: list[list[tuple[str, np.ndarray]]] | None = None,
) -> tuple[float, float, float]:  # fmt: skip
    """(MRR, hit@1, hit@5) with chunk rankings from rank(dense, keyword, coverage)
    scores, coverage being the query's `coverage`.

    floor: the dense normalisation's floor; None = the store's mean cosine to the query.
    doc: the document (first chunk) weight; decay: the same-file discount.
    rerank: (scorer, k, weight): the top k re-ordered by rerank.reorder.
    script: a question in another script than the first document is ranked by dense.
    searched: for each question, the (text, vector) searched, each chunk keeping its
    best score over them (default: the question as written).
    """
    centroid = ix.matrix.mean(axis=0)
    first = np.array([np.flatnonzero(ix.pages == p)[0] for p in range(len(ix.names))])
    rr, h1, h5 = [], 0, 0

    def score(text: str, vec: np.ndarray) -> np.ndarray:
        base = float(centroid @ vec) if floor is None else floor
        own = dense_scores(ix.matrix @ vec, base)
        dense = (1 - doc) * own + doc * own[first[ix.pages]]
        rows, kw = ix.postings.scores(text)
        keyword = np.zeros(len(ix.pages), dtype=np.float32)
        keyword[rows] = kw
        if script and mostly_latin(text) != ix.latin:
            return dense
        return rank(dense, keyword, query_coverage(ix.postings, text))

    questions = corpus.questions(split)
    searched = searched or [[(q.question, v)] for q, v in zip(questions, queries, strict=True)]
    for q, alternatives in zip(questions, searched, strict=True):
        ranked = np.max([score(text, vec) for text, vec in alternatives], axis=0)
        order, scores = spread_files(ranked, ix.pages, 50, decay)
        if rerank is not None:
            scorer, k, weight = rerank
            top = order[:k]
            opinion = scorer.score(q.question, [ix.texts[i] for i in top])
            order = np.r_[top[reorder(scores[:k], opinion, weight)], order[k:]]
        target = ix.names.index(q.page)
        hits = np.flatnonzero(ix.pages[order] == target)
        rank_ = int(hits[0]) + 1 if len(hits) else 0
        rr.append(1 / rank_ if rank_ else 0.0)
        h1 += rank_ == 1
        h5 += 0 < rank_ <= 5
    n = len(rr)
    return float(np.mean(rr)), h1 / n, h5 / n


def naive(  # type: ignore[no-untyped-def]
    corpus: Corpus, model_id: str, model, pprefix: str, queries: np.ndarray, split: str
) -> str:
    """hit@1/hit@5/MRR of the naive baseline (retrieval.py's plain word chunks, brute force)."""
    from retrieval import naive_chunks

    texts, pages = naive_chunks(corpus)
    subset = pages_key(corpus)
    path = CACHE / "vectors" / f"naive-{corpus.name.removesuffix('-xl')}{subset}-{model_id}.npy"
    if path.exists():
        matrix = np.load(path)
    else:
        matrix = model.encode([pprefix + t for t in texts], batch_size=64,
                              normalize_embeddings=True, show_progress_bar=False)  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, matrix)
    rr, h1, h5 = [], 0, 0
    for q, vec in zip(corpus.questions(split), queries, strict=True):
        ranked = [pages[i] for i in np.argsort(-(matrix @ vec), kind="stable")[:50]]
        rank_ = ranked.index(q.page) + 1 if q.page in ranked else 0
        rr.append(1 / rank_ if rank_ else 0.0)
        h1 += rank_ == 1
        h5 += 0 < rank_ <= 5
    n = len(rr)
    return f"{h1 / n:.2f}/{h5 / n:.2f}/{np.mean(rr):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="all-minilm-l6-v2")
    ap.add_argument("--corpora", default="man-en,python-doc,man-zh,man-zh-xl")
    ap.add_argument("--chunks", default="800/400")
    ap.add_argument("--weights", default="0,0.1,0.15,0.2,0.3")
    ap.add_argument("--doc", default="0.2,0.3", help="document (first chunk) weights")
    ap.add_argument("--decay", default="1,0.7", help="same-file discounts (1 = none)")
    ap.add_argument(
        "--powers", default="0", help="coverage powers: weight x coverage**p (0 = fixed)"
    )
    ap.add_argument("--norms", default="floor", help="dense normalisations: floor,mean,raw")
    ap.add_argument("--script", default="1", help="script gate off (0) / on (1)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--headers", default="0,1", help="document headers off (0) / on (1)")
    ap.add_argument("--stop", default="tunelab", help=f"stop-word lists: {','.join(STOPLISTS)}")
    ap.add_argument("--pages", type=int, default=0, help="keep N pages per corpus (quick run)")
    ap.add_argument("--rerank", default="", help=f"name:k,... of {','.join(SCORERS)}")
    ap.add_argument("--mix", default="0.5,1", help="re-ranker weights in the mix")
    ap.add_argument(
        "--rewrite", default="0", help="questions as written (0), rewritten (1), both (2)"
    )
    args = ap.parse_args()
    corpora, _ = build(CACHE)
    chosen = [c for c in corpora if c.name in args.corpora.split(",")]
    if args.pages:
        chosen = [c.smaller(args.pages, args.split) for c in chosen]
    weights = [float(w) for w in args.weights.split(",")]
    reranks = [(name, int(k)) for name, k in (x.split(":") for x in args.rerank.split(",") if x)]
    scorers = {name: SCORERS[name](CACHE, CACHE / "models") for name, _ in reranks}
    for model_id in args.models.split(","):
        model, qprefix, pprefix = load_model(model_id)
        floor = similarity_floor(
            model.encode([qprefix + t for t in UNRELATED], normalize_embeddings=True),
            model.encode([pprefix + t for t in UNRELATED], normalize_embeddings=True),
        )
        print(f"{model_id}: similarity floor {floor:.3f}; hit@1/hit@5/MRR per keyword weight "
              f"{args.weights}")  # fmt: skip
        for corpus in chosen:
            asked = [q.question for q in corpus.questions(args.split)]
            queries = model.encode(
                [qprefix + q for q in asked], normalize_embeddings=True, show_progress_bar=False
            )
            rewritten = [rewrite_query(q) for q in asked]
            queries_rewritten = model.encode(
                [qprefix + q for q in rewritten], normalize_embeddings=True,
                show_progress_bar=False,
            )  # fmt: skip
            print(f"{corpus.name:<11} naive dense baseline "
                  f"{naive(corpus, model_id, model, pprefix, queries, args.split)}")  # fmt: skip
            for setting, header in itertools.product(
                args.chunks.split(","), [x == "1" for x in args.headers.split(",")]
            ):
                size, overlap = (int(x) for x in setting.split("/"))
                ix = index(corpus, model_id, model, pprefix, size, overlap, header)
                norms = {"floor": floor, "mean": None, "raw": 0.0}
                for stop, norm, doc, decay, power, script, rewrite in itertools.product(
                    args.stop.split(","),
                    args.norms.split(","),
                    [float(x) for x in args.doc.split(",")],
                    [float(x) for x in args.decay.split(",")],
                    [float(x) for x in args.powers.split(",")],
                    [x == "1" for x in args.script.split(",")],
                    [int(x) for x in args.rewrite.split(",")],
                ):
                    pairs = [
                        [(a, v)] if rewrite == 0 else [(r, w)] if rewrite == 1 else [(a, v), (r, w)]
                        for a, v, r, w in zip(
                            asked, queries, rewritten, queries_rewritten, strict=True
                        )
                    ]
                    term_module.STOPWORDS = STOPLISTS[stop]
                    ix.postings = keyword_postings(ix.texts)
                    h = f"{setting:>8}{' h' if header else '  '} {norm:<6}"
                    row = [f"{corpus.name:<11}{h}doc {doc:.2f} decay {decay:.2f} stop {stop:<7}"
                           f" cov^{power:g} script {script:d} rewrite {rewrite:d}"]  # fmt: skip
                    for w in weights:
                        mrr, h1, h5 = evaluate(
                            ix, corpus, queries, args.split,
                            lambda d, k, c, w=w, p=power: hybrid_scores(d, k, w * c**p),
                            norms[norm], doc, decay, script=script, searched=pairs,
                        )  # fmt: skip
                        row.append(f"{h1:.2f}/{h5:.2f}/{mrr:.2f}")
                    print("  ".join(row), flush=True)
                    for (name, k), mix in itertools.product(
                        reranks, [float(x) for x in args.mix.split(",")]
                    ):
                        row = [f"{'':<11}  rerank {name}:{k} mix {mix:.2f}"]
                        for w in weights:
                            mrr, h1, h5 = evaluate(
                                ix, corpus, queries, args.split,
                                lambda d, k_, c, w=w, p=power: hybrid_scores(d, k_, w * c**p),
                                norms[norm], doc, decay, (scorers[name], k, mix), script, pairs,
                            )  # fmt: skip
                            row.append(f"{h1:.2f}/{h5:.2f}/{mrr:.2f}")
                        print("  ".join(row), flush=True)
                        scorers[name].save()
    for name, s in scorers.items():
        if s.batches:
            print(f"{name}: {s.seconds / s.batches:.2f} s per question "
                  f"({s.computed / s.batches:.1f} new candidates each, {s.batches} questions), "
                  f"{s.seconds / s.computed:.3f} s per candidate")  # fmt: skip


if __name__ == "__main__":
    main()
