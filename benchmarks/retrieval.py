"""Retrieval quality on real corpora, ingestion speed and search latency, in one run.

1. Quality. For each registered embedding model (or --models) a live `tunelab serve`
   is started with that model as the default, and for each corpus of
   benchmarks/corpora.py (Debian man pages in English and Chinese, the Python library
   reference; built from the packages with apt-get download) a vector store is
   filled through the openai SDK (`file_batches.upload_and_poll`, default chunking)
   and the reported questions of benchmarks/questions/ are searched through the SDK
   with each ranker. A question is a hit at k when one of the first k results comes
   from its answer page. Next to tunelab, in this process and with the same model
   and prefixes: the naive baseline a user would write (sentence-transformers
   brute-force cosine over plain ~460-word chunks of the same extracted text) and
   BM25 (rank_bm25) over the same naive chunks (words; jieba for Chinese).
2. Ingestion: chunks/s end to end through the API (upload, extract, chunk, embed,
   index) against `SentenceTransformer.encode` of the same chunk texts, same model.
3. Latency, one query at a time: the whole per-store scoring path (dense + BM25 +
   fusion over every chunk) and exact dense top-10 next to FAISS IndexFlatIP, at
   10k and 100k chunks (real chunk texts repeated, random unit vectors), plus the
   SDK round trip p50/p95 of the quality run.

4. With --backends ...,postgres, each corpus again through a server on PostgreSQL + pgvector:
   the same quality table for that path, then (benchmarks/hnsw.py) recall@10 of its
   HNSW + full-text search against exact search over the same rows, per ranker, and
   the latency of both.

    .venv/bin/python benchmarks/retrieval.py [--models all-minilm-l6-v2,...]
        [--corpora man-en,python-doc,man-zh,man-zh-xl] [--sizes 10000,100000]
        [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import hnsw
import numpy as np
import torch
from corpora import Corpus, Question, build

from tests import postgres
from tests.support import scratch_database
from tunelab.hardware import bf16_fast
from tunelab.models.registry import Registry
from tunelab.retrieval.documents import extract_text

CACHE = Path.home() / ".cache" / "tunelab-bench"
NAIVE_WORDS = 460
RANKERS = ("hybrid", "dense", "keyword")


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1000, float(np.percentile(samples, 95)) * 1000


class Scores:
    """hit@1, hit@5 and MRR (first 10 results) of ranked page lists."""

    def __init__(self) -> None:
        self.ranks: list[int] = []  # 0 = not in the first 10

    def add(self, pages: list[str], answer: str) -> None:
        self.ranks.append(next((i + 1 for i, p in enumerate(pages[:10]) if p == answer), 0))

    def row(self) -> str:
        r = np.array(self.ranks)
        mrr = float(np.mean([1 / x if x else 0.0 for x in r]))
        return f"{np.mean(r == 1):>7.2f}{np.mean((r > 0) & (r <= 5)):>7.2f}{mrr:>7.2f}"


# ------------------------------------------------------------------ tunelab over HTTP


@contextmanager
def live_server(model: str, cache: Path, database_url: str = "") -> Iterator[str]:
    """`tunelab serve` in its own process, data in a temp dir, `model` the model of every
    store (no choice by the documents' script: each run measures one model); its
    database is SQLite in the data dir, or `database_url`."""
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {
            **os.environ, "TUNELAB_DEFAULT_EMBEDDING_MODEL": model,
            "TUNELAB_MULTILINGUAL_EMBEDDING_MODEL": "",
            "TUNELAB_CACHE_DIR": str(cache / "models"), "HF_HUB_OFFLINE": "1",
        }  # fmt: skip
        if database_url:
            env["TUNELAB_DATABASE_URL"] = database_url
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunelab", "serve", "--port", str(port), "--data-dir", tmp],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 180
            while True:
                try:
                    httpx.get(url + "/v1/models", timeout=2)
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = proc.stderr.read().decode() if proc.stderr else ""
                        raise SystemExit(f"tunelab serve did not start:\n{err[-2000:]}") from None
                    time.sleep(0.5)
            yield url + "|" + tmp
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def store_rows(database_url: str, sql: str, store_id: str) -> list[tuple[str, ...]]:
    """Rows of one query about a store (`:s` is its id), read straight from the database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as c:
        rows = c.execute(text(sql), {"s": store_id}).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def chunk_texts(database_url: str, store_id: str) -> list[str]:
    sql = "SELECT text FROM vector_store_chunks WHERE vector_store_id = :s"
    return [r[0] for r in store_rows(database_url, sql, store_id)]


def file_names(database_url: str, store_id: str) -> list[tuple[str, str]]:
    sql = "SELECT file_id, filename FROM vector_store_files WHERE vector_store_id = :s"
    return [(r[0], r[1]) for r in store_rows(database_url, sql, store_id)]


def tunelab_rows(client, database_url: str, corpus: Corpus, model, prefix: str):  # type: ignore[no-untyped-def]
    """Index `corpus` through the API and score the rankers; prints ingestion speed.
    Returns the scores of each ranker and the store's id."""
    vs = client.vector_stores.create(name=corpus.name)
    files = [(d.filename, d.data) for d in corpus.documents]
    t = time.perf_counter()
    for start in range(0, len(files), 100):  # the SDK uploads a batch's files concurrently
        batch = client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=vs.id, files=files[start : start + 100], max_concurrency=4
        )
        assert batch.file_counts.failed == 0, batch.file_counts
    elapsed = time.perf_counter() - t
    texts = chunk_texts(database_url, vs.id)
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_fast("cpu")):  # as served
        model.encode([prefix + x for x in texts], batch_size=64, show_progress_bar=False)
    floor = time.perf_counter() - t
    print(f"  ingestion: {len(texts)} chunks in {elapsed:.0f} s = {len(texts) / elapsed:.1f} "
          f"chunks/s; plain encode of the same chunks {len(texts) / floor:.1f} chunks/s "
          f"-> {floor / elapsed:.0%} of model-only speed")  # fmt: skip
    page_of = {d.filename: d.name for d in corpus.documents}
    out = {r: Scores() for r in RANKERS}
    times: list[float] = []
    for q in corpus.questions():
        for ranker in RANKERS:
            t = time.perf_counter()
            page = client.vector_stores.search(
                vs.id, query=q.question, max_num_results=10, ranking_options={"ranker": ranker}
            )
            times.append(time.perf_counter() - t)
            out[ranker].add([page_of[r.filename] for r in page.data], q.page)
    p50, p95 = percentiles(times)
    print(f"  SDK search round trip over {len(texts)} chunks: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    return out, vs.id


# ------------------------------------------------------------------ baselines in-process


def naive_chunks(corpus: Corpus) -> tuple[list[str], list[str]]:
    """(chunk text, page) of plain NAIVE_WORDS-word chunks; CJK text counts characters."""
    texts, pages = [], []
    for d in corpus.documents:
        text = extract_text(d.filename, d.data)
        words = re.findall(r"[\u4e00-\u9fff]|[^\s\u4e00-\u9fff]+", text)
        for i in range(0, len(words), NAIVE_WORDS):
            part = words[i : i + NAIVE_WORDS]
            texts.append("".join(w if re.match(r"[\u4e00-\u9fff]", w) else f" {w}" for w in part))
            pages.append(d.name)
    return texts, pages


def bm25_tokens(text: str) -> list[str]:
    import jieba

    words = []
    for run in re.findall(r"[\u4e00-\u9fff]+|\w+", text.lower()):
        words.extend(jieba.lcut(run) if re.match(r"[\u4e00-\u9fff]", run) else [run])
    return words


def baseline_rows(corpus: Corpus, model, qprefix: str, pprefix: str) -> dict[str, Scores]:  # type: ignore[no-untyped-def]
    from rank_bm25 import BM25Okapi

    texts, pages = naive_chunks(corpus)
    matrix = model.encode([pprefix + t for t in texts], batch_size=64,
                          normalize_embeddings=True, show_progress_bar=False)  # fmt: skip
    bm25 = BM25Okapi([bm25_tokens(t) for t in texts])
    questions: list[Question] = corpus.questions()
    vecs = model.encode([qprefix + q.question for q in questions], normalize_embeddings=True)
    out = {"naive dense": Scores(), "naive BM25": Scores()}
    for q, v in zip(questions, vecs, strict=True):
        lexical = bm25.get_scores(bm25_tokens(q.question))
        for name, scores in (("naive dense", matrix @ v), ("naive BM25", lexical)):
            out[name].add([pages[i] for i in np.argsort(-scores, kind="stable")[:10]], q.page)
    return out


# ------------------------------------------------------------------ latency


def latency(sizes: list[int], n_queries: int, texts: list[str], questions: list[str]) -> None:
    import faiss

    from tunelab.retrieval.index import DenseIndex, StoreMatrix, StorePostings
    from tunelab.retrieval.ranking import dense_scores, hybrid_scores, spread_files
    from tunelab.retrieval.terms import decode_terms, encode_terms

    print(f"\nsearch latency, one query at a time, dim 384 (chunk texts: {len(texts)} real ones "
          "repeated; vectors random)")  # fmt: skip
    print(f"{'chunks':>8}{'full p50':>10}{'p95':>8}{'dense top10':>13}{'faiss':>8}"
          f"{'faiss/ours':>12}{'BM25 build s':>14}")  # fmt: skip
    rng = np.random.default_rng(0)
    encoded = [decode_terms(encode_terms(t)) for t in texts]
    for n in sizes:
        vecs = rng.standard_normal((n, 384), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        files = np.arange(n, dtype=np.int32) // 10  # ten chunks per file
        m = StoreMatrix(1, np.arange(n, dtype=np.int64), files, ["f"] * (n // 10 + 1), vecs)
        t = time.perf_counter()
        postings = StorePostings.build(
            1, m.chunk_ids, [encoded[i % len(encoded)] for i in range(n)]
        )
        build_s = time.perf_counter() - t
        index = faiss.IndexFlatIP(384)
        index.add(vecs)
        full, ours, theirs = [], [], []
        for i in range(n_queries):
            q = vecs[rng.integers(0, n)] + 0.01
            t = time.perf_counter()
            rows, kw = postings.scores(questions[i % len(questions)])
            keyword = np.zeros(n, dtype=np.float32)
            keyword[rows] = kw
            scores = hybrid_scores(dense_scores(m.matrix @ q, 0.1), keyword)
            spread_files(scores, files, 10)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            mine = DenseIndex.search(m, q, 10)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            _, ids = index.search(q[None, :], 10)
            theirs.append(time.perf_counter() - t)
            assert [c for c, _ in mine] == ids[0].tolist()  # the same exact answer
        f50, f95 = percentiles(full)
        o50, _ = percentiles(ours)
        x50, _ = percentiles(theirs)
        print(f"{n:>8}{f50:>8.1f}ms{f95:>8.1f}{o50:>11.1f}ms{x50:>6.1f}ms{x50 / o50:>12.2f}"
              f"{build_s:>14.2f}")  # fmt: skip
    print(
        "(full = BM25 + dense + fusion over every chunk + the same-file discount, as a "
        "search of one store does; "
        "BM25 build = loading a store's postings after a change)"
    )


def quality(  # type: ignore[no-untyped-def]
    model_id: str, model, prefixes: tuple[str, str], chosen: list[Corpus], cache: Path,
    database: str = "",
) -> None:  # fmt: skip
    """Every corpus through one live server (SQLite in its data dir, or `database`):
    the rankers' scores; on SQLite next to the baselines, on PostgreSQL followed by
    HNSW against exact search over the same rows."""
    from openai import OpenAI

    qprefix, pprefix = prefixes
    with live_server(model_id, cache, database) as both:
        url, data_dir = both.split("|")
        client = OpenAI(base_url=url + "/v1", api_key="bench", timeout=600)
        for corpus in chosen:
            print(f"\n{model_id} / {corpus.name}" + (" on PostgreSQL" if database else ""))
            db_url = database or f"sqlite:///{data_dir}/tunelab.db"
            rows, store = tunelab_rows(client, db_url, corpus, model, pprefix)
            if not database:
                rows.update(baseline_rows(corpus, model, qprefix, pprefix))
            print(f"  {'ranker':<22}{'hit@1':>7}{'hit@5':>7}{'MRR':>7}")
            for name, scores in rows.items():
                label = f"tunelab {name}" if name in RANKERS else name
                print(f"  {label:<22}{scores.row()}", flush=True)
            if database:
                qs = corpus.questions()
                page_of = {d.filename: d.name for d in corpus.documents}
                files = {f: page_of[n] for f, n in file_names(database, store)}
                hnsw.compare(database, store, [q.question for q in qs], model, qprefix,
                             pprefix, [q.page for q in qs], files)  # fmt: skip


def main() -> None:
    from tunelab.models.loading import load_sentence_transformer

    registry = Registry.load()
    embedding_models = [s.id for s in registry.all() if s.kind == "embedding"]
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(embedding_models))
    ap.add_argument("--corpora", default="man-en,python-doc,man-zh,man-zh-xl")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--pages", type=int, default=0, help="keep N pages per corpus (quick run)")
    ap.add_argument("--backends", default="sqlite",
                    help="sqlite and/or postgres (+ HNSW vs exact search)")  # fmt: skip
    args = ap.parse_args()
    corpora, versions = build(args.cache)
    chosen = [c for c in corpora if c.name in args.corpora.split(",")]
    if args.pages:
        chosen = [c.smaller(args.pages) for c in chosen]
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at start "
          f"({'shared' if load > 1.5 else 'idle'}); packages: "
          + ", ".join(f"{p} {v}" for p, v in versions.items()))  # fmt: skip
    for c in chosen:
        print(f"corpus {c.name}: {len(c.documents)} pages, "
              f"{sum(len(d.data) for d in c.documents) / 1e6:.1f} MB, "
              f"{len(c.questions())} questions ({c.language})")  # fmt: skip
    with ExitStack() as stack:
        # postgres: a throwaway PostgreSQL cluster (tests/postgres.py; pgvector from
        # `make system-deps`), one database per model.
        pg = stack.enter_context(postgres.cluster()) if "postgres" in args.backends else ""
        for model_id in args.models.split(","):
            spec = registry.get(model_id)
            prefixes = getattr(spec, "query_prefix", ""), getattr(spec, "passage_prefix", "")
            model = load_sentence_transformer(spec, args.cache / "models")  # as the server's
            if "sqlite" in args.backends:
                quality(model_id, model, prefixes, chosen, args.cache)
            if pg:
                database = scratch_database(pg, f"bench_{model_id}")
                quality(model_id, model, prefixes, chosen, args.cache, database)
    man = next(c for c in corpora if c.name == "man-en")
    texts, _ = naive_chunks(man)
    latency([int(s) for s in args.sizes.split(",")], args.queries, texts,
            [q.question for q in man.questions()])  # fmt: skip


if __name__ == "__main__":
    main()
