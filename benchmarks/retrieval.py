"""Retrieval quality and speed: hybrid vs dense-only vs keyword-only, and exact search vs FAISS.

1. Quality. Indexes the Brewmaster K2 manual (benchmarks/data/manual.md, written for
   this project) plus generated distractor manuals of other appliances, then asks the
   54 paraphrased questions of benchmarks/data/questions.jsonl; a question is a hit
   when a returned chunk contains its known answer sentence. Reports hit@1 / hit@5
   for each ranker and ingestion speed (chunks/s, end to end: extract, chunk,
   embed, index).
2. Latency. Dense top-10 search over 10k and 100k synthetic 384-d unit vectors with
   tunelab's DenseIndex and with FAISS IndexFlatIP (exact) over the same vectors in
   this run, p50/p95 per query, and the achieved memory bandwidth next to a plain
   numpy copy (the machine's limit for a scan). Also the full hybrid search latency
   (query embedding + dense + FTS5 + fusion) on the real corpus.

    .venv/bin/python benchmarks/retrieval.py [--distractors 60] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tunelab.retrieval.index import DenseIndex, StoreMatrix
from tunelab.retrieval.service import build_retrieval
from tunelab.services import build_services
from tunelab.settings import Settings

DATA = Path(__file__).resolve().parent / "data"
APPLIANCES = ["toaster", "blender", "air fryer", "rice cooker", "kettle", "stand mixer", "juicer"]
PARTS = ["lid", "base", "blade", "basket", "display", "power cord", "seal", "timer", "dial"]
ACTIONS = [
    "Wipe the {p} with a soft cloth after every use.",
    "Check that the {p} is locked before pressing start.",
    "The {p} can be replaced by an authorised dealer.",
    "If the {p} feels loose, stop using the {a} and contact support.",
    "Do not immerse the {p} in water.",
    "The {p} of the {a} is made of recycled plastic.",
    "Press and hold the {p} for two seconds to pause the programme.",
    "A blinking {p} indicates that the {a} is cooling down.",
]


def distractor_manual(n: int, rng: random.Random) -> str:
    """A plausible but irrelevant appliance manual: same vocabulary, other facts."""
    a = APPLIANCES[n % len(APPLIANCES)]
    sections = []
    for s in range(12):
        body = " ".join(rng.choice(ACTIONS).format(p=rng.choice(PARTS), a=a) for _ in range(5))
        sections.append(f"## {s + 1}. {rng.choice(PARTS).title()} care\n\n{body}")
    return f"# {a.title()} model {n} manual\n\n" + "\n\n".join(sections)


def wait_indexed(stores, project: str, store_id: str) -> None:
    while stores.get(project, store_id).counts["in_progress"]:
        time.sleep(0.05)


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1000, float(np.percentile(samples, 95)) * 1000


def quality(services, retrieval, distractors: int) -> None:
    project = "bench"
    stores = retrieval.stores
    rng = random.Random(0)
    docs = [("manual.md", (DATA / "manual.md").read_bytes())]
    docs += [(f"appliance-{n}.md", distractor_manual(n, rng).encode()) for n in range(distractors)]
    vs = stores.create(project, name="bench", description=None, file_ids=[],
                       chunking_strategy=None, expires_after=None, metadata=None)  # fmt: skip
    services.embeddings.embed(services.settings.default_embedding_model, ["warm up"])
    t = time.perf_counter()
    for name, data in docs:
        row = services.files.create_from_bytes(
            project=project, filename=name, purpose="assistants", data=data
        )
        stores.attach(project, vs.row.id, row.id, attributes=None, chunking=(800, 400))
    wait_indexed(stores, project, vs.row.id)
    elapsed = time.perf_counter() - t
    n_chunks = stores.chunk_count(vs.row.id)
    n_bytes = sum(len(d) for _, d in docs)
    print(f"corpus: {len(docs)} documents, {n_bytes / 1e3:.0f} kB, {n_chunks} chunks "
          f"(static 800/400 clamped to 254/127 for all-minilm-l6-v2)")  # fmt: skip
    # Baseline: the embedding model alone on the same chunk texts, in this run.
    with services.db() as s:
        from sqlalchemy import select

        from tunelab.retrieval.tables import ChunkRow

        texts = list(s.execute(select(ChunkRow.text)).scalars())
    from tunelab.models.loading import load_sentence_transformer

    model = load_sentence_transformer(
        services.registry.get(services.settings.default_embedding_model),
        services.settings.model_cache_dir,
    )
    t = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    floor = time.perf_counter() - t
    print(f"ingestion: {n_chunks / elapsed:.1f} chunks/s ({elapsed:.1f} s end to end); "
          f"plain SentenceTransformer.encode of the same chunks: {n_chunks / floor:.1f} chunks/s "
          f"-> tunelab at {floor / elapsed:.0%} of the model-only speed\n")  # fmt: skip

    questions = [
        json.loads(line) for line in (DATA / "questions.jsonl").read_text().splitlines() if line
    ]
    print(
        f"{'ranker':<10}{'hit@1':>8}{'hit@5':>8}{'p50 ms':>9}{'p95 ms':>9}   ({len(questions)} questions)"
    )
    for ranker in ("hybrid", "dense", "keyword"):
        h1 = h5 = 0
        times = []
        for q in questions:
            t = time.perf_counter()
            hits = retrieval.searcher.search_stores(project, [vs.row.id], [q["question"]],
                                                    max_results=5, ranker=ranker)  # fmt: skip
            times.append(time.perf_counter() - t)
            found = [q["answer"] in " ".join(h.text.split()) for h in hits]
            h1 += bool(found[:1] and found[0])
            h5 += any(found)
        p50, p95 = percentiles(times)
        print(
            f"{ranker:<10}{h1 / len(questions):>8.2f}{h5 / len(questions):>8.2f}{p50:>9.1f}{p95:>9.1f}"
        )
    print("(latency includes embedding the query with MiniLM for hybrid and dense)\n")


def memory_bandwidth() -> float:
    """Bytes/s of a large numpy copy (read + write): the ceiling for a scan."""
    src = np.ones(64 * 1024 * 1024 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t = time.perf_counter()
    for _ in range(5):
        np.copyto(dst, src)
    return 2 * src.nbytes * 5 / (time.perf_counter() - t)


def latency(sizes: list[int], n_queries: int) -> None:
    import faiss

    bandwidth = memory_bandwidth()
    print(
        f"memory bandwidth (numpy copy): {bandwidth / 1e9:.1f} GB/s; dim 384, top-10, one query at a time"
    )
    print(
        f"{'chunks':>8}{'tunelab p50':>13}{'p95':>8}{'faiss p50':>11}{'p95':>8}{'faiss/ours':>12}{'scan GB/s':>11}"
    )
    rng = np.random.default_rng(0)
    for n in sizes:
        vecs = rng.standard_normal((n, 384), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        queries = vecs[rng.integers(0, n, n_queries)] + 0.01
        m = StoreMatrix(1, np.arange(n, dtype=np.int64), np.zeros(n, np.int32), ["f"], vecs)
        index = faiss.IndexFlatIP(384)
        index.add(vecs)
        ours, theirs = [], []
        for q in queries:
            t = time.perf_counter()
            mine = DenseIndex.search(m, q, 10)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            _, ids = index.search(q[None, :], 10)
            theirs.append(time.perf_counter() - t)
            assert [c for c, _ in mine] == ids[0].tolist()  # same exact answer
        o50, o95 = percentiles(ours)
        f50, f95 = percentiles(theirs)
        scan = vecs.nbytes / (o50 / 1000)
        print(
            f"{n:>8}{o50:>11.2f}ms{o95:>8.2f}{f50:>9.2f}ms{f95:>8.2f}{f50 / o50:>12.2f}{scan / 1e9:>11.1f}"
        )
    print("(faiss/ours > 1 means tunelab's exact search is faster)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--distractors", type=int, default=60, help="generated irrelevant manuals")
    ap.add_argument("--queries", type=int, default=200, help="queries per latency size")
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data")
        services = build_services(settings)
        retrieval = build_retrieval(services)
        try:
            quality(services, retrieval, args.distractors)
        finally:
            retrieval.close()
            services.close()
    latency([int(s) for s in args.sizes.split(",")], args.queries)


if __name__ == "__main__":
    main()
