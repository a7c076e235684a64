"""Ranking levers measured on the development questions and rejected (in-process).

Each lever changes one thing of the default hybrid ranking (all-minilm-l6-v2, `auto`
chunks with headers, keyword weight 0.2, same-file discount 0.7), using the
development questions only to choose, as ranking_dev.py does; the numbers are in
docs/retrieval.md ("Other levers").

    header    each file's header (file name, title, NAME line) embedded on its own,
              its dense score mixed into every chunk of the file with weight d
    filesum   each chunk's score + g x the mean of its file's 2nd-4th best scores
              (a page with several matching passages counts for more)
    windows   each chunk also embedded as windows of 40 words (stride 20, the
              document header in front); a chunk's dense score mixes in its best
              window's with weight m (a question about one sentence of a long chunk)
    hyde      a hypothetical answer (HyDE, Gao et al. 2022): SmolLM2 asked which
              command does what the question asks, its answer embedded and added to
              the question's vector with weight h
    prf       pseudo-relevance feedback: the query vector + a x the mean of the top
              5 chunks' vectors, then ranked again
    adapt     domain adaptation of the embedding model on the corpus's own text
              (inverse cloze: a sentence of a chunk is the query, the chunk
              without it the passage, other chunks of the batch the negatives);
              no question is used, so the held-out split is reported too

    .venv/bin/python benchmarks/ranking_levers.py [--corpora man-en,python-doc]
        [--levers header,filesum,prf,windows,hyde] [--adapt man-en] [--epochs 1] [--lr 3e-5]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from corpora import Corpus, Question, build
from ranking_dev import CACHE, Indexed, index, load_model

from tunelab.retrieval.chunking import fitted_header
from tunelab.retrieval.documents import extract_text
from tunelab.retrieval.ranking import (
    KEYWORD_WEIGHT,
    SAME_FILE_DECAY,
    UNRELATED,
    dense_scores,
    similarity_floor,
    spread_files,
)

MODEL = "all-minilm-l6-v2"
Scorer = Callable[[Question, np.ndarray], np.ndarray]


def measure(ix: Indexed, asked: list[tuple[Question, np.ndarray]], score: Scorer) -> str:
    """hit@1 / hit@5 / MRR of the answer page, after the same-file discount."""
    rr, h1, h5 = [], 0, 0
    for q, vec in asked:
        order, _ = spread_files(score(q, vec), ix.pages, 50, SAME_FILE_DECAY)
        hits = np.flatnonzero(ix.pages[order] == ix.names.index(q.page))
        rank = int(hits[0]) + 1 if len(hits) else 0
        rr.append(1 / rank if rank else 0.0)
        h1 += rank == 1
        h5 += 0 < rank <= 5
    return f"{h1 / len(rr):.2f}/{h5 / len(rr):.2f}/{np.mean(rr):.3f}"


class Ranking:
    """The default hybrid ranking of one indexed corpus, with the levers as variants."""

    def __init__(self, ix: Indexed, matrix: np.ndarray, floor: float) -> None:
        self.ix, self.matrix, self.floor = ix, matrix, floor
        self._keyword: dict[str, np.ndarray] = {}

    def keyword(self, question: str) -> np.ndarray:
        if question not in self._keyword:
            rows, scores = self.ix.postings.scores(question)
            full = np.zeros(len(self.ix.pages), dtype=np.float32)
            full[rows] = scores
            self._keyword[question] = full
        return self._keyword[question]

    def hybrid(self, q: Question, vec: np.ndarray) -> np.ndarray:
        dense = dense_scores(self.matrix @ vec, self.floor)
        return (1 - KEYWORD_WEIGHT) * dense + KEYWORD_WEIGHT * self.keyword(q.question)

    def with_header(self, heads: np.ndarray, d: float) -> Scorer:
        def score(q: Question, vec: np.ndarray) -> np.ndarray:
            own = dense_scores(heads @ vec, self.floor)[self.ix.pages]
            return (1 - d) * self.hybrid(q, vec) + d * own

        return score

    def with_file_sum(self, g: float) -> Scorer:
        def score(q: Question, vec: np.ndarray) -> np.ndarray:
            s = self.hybrid(q, vec)
            extra = np.zeros(len(self.ix.names))
            for page in range(len(self.ix.names)):
                ranked = np.sort(s[self.ix.pages == page])[::-1]
                extra[page] = ranked[1:4].mean() if len(ranked) > 1 else 0.0
            return s + g * extra[self.ix.pages]

        return score

    def with_windows(self, vectors: np.ndarray, starts: np.ndarray, m: float) -> Scorer:
        """`vectors`: every chunk's windows, chunk by chunk; `starts`: each chunk's first."""

        def score(q: Question, vec: np.ndarray) -> np.ndarray:
            best = np.maximum.reduceat(vectors @ vec, starts)
            mixed = (1 - m) * (self.matrix @ vec) + m * best
            dense = dense_scores(mixed, self.floor)
            return (1 - KEYWORD_WEIGHT) * dense + KEYWORD_WEIGHT * self.keyword(q.question)

        return score

    def with_feedback(self, a: float) -> Scorer:
        def score(q: Question, vec: np.ndarray) -> np.ndarray:
            top = np.argsort(-self.hybrid(q, vec))[:5]
            moved = vec + a * self.matrix[top].mean(axis=0)
            return self.hybrid(q, moved / np.linalg.norm(moved))

        return score


def levers(corpus: Corpus, chosen: list[str]) -> None:
    model, _, prefix = load_model(MODEL)
    floor = floor_of(model)
    ix = index(corpus, MODEL, model, prefix, 800, 400, True)
    ranking = Ranking(ix, ix.matrix, floor)
    questions = corpus.questions("dev")
    asked = list(zip(questions, model.encode([q.question for q in questions],
                                             normalize_embeddings=True), strict=True))  # fmt: skip
    print(f"{corpus.name}: {len(asked)} development questions, {len(ix.pages)} chunks")
    print(f"  default hybrid      {measure(ix, asked, ranking.hybrid)}")
    if "header" in chosen:
        window = model.max_seq_length - model.tokenizer.num_special_tokens_to_add()
        heads = model.encode([
            fitted_header(d.filename, extract_text(d.filename, d.data), model.tokenizer, window)[0]
            for d in corpus.documents
        ], normalize_embeddings=True)  # fmt: skip
        for d in (0.1, 0.2, 0.3, 0.5):
            print(f"  header d={d:<4}       {measure(ix, asked, ranking.with_header(heads, d))}")
    if "filesum" in chosen:
        for g in (0.1, 0.2, 0.3):
            print(f"  filesum g={g:<4}      {measure(ix, asked, ranking.with_file_sum(g))}")
    if "windows" in chosen:
        texts, starts = windows(ix.texts)
        path = CACHE / "vectors" / f"{corpus.name}-{MODEL}-windows40-{len(texts)}.npy"
        if path.exists():
            vectors = np.load(path)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
            np.save(path, vectors)
        print(f"  ({len(texts)} windows)")
        for split in ("dev", "report"):
            qs = corpus.questions(split)
            got = list(zip(qs, model.encode([q.question for q in qs], normalize_embeddings=True),
                           strict=True))  # fmt: skip
            print(f"  {split:<6} default   {measure(ix, got, ranking.hybrid)}")
            for m in (0.2, 0.4, 0.6):
                scorer = ranking.with_windows(vectors, starts, m)
                print(f"  {split:<6} windows m={m:<4} {measure(ix, got, scorer)}")
    if "hyde" in chosen:
        answers = hypothetical_answers([q.question for q, _ in asked])
        print(f"  (e.g. {asked[0][0].question!r} -> {answers[0]!r})")
        extra = model.encode(answers, normalize_embeddings=True)
        for h in (0.2, 0.4, 0.7, 1.0):
            moved = [(q, v + h * e) for (q, v), e in zip(asked, extra, strict=True)]
            moved = [(q, v / np.linalg.norm(v)) for q, v in moved]
            print(f"  hyde h={h:<4}         {measure(ix, moved, ranking.hybrid)}")
    if "prf" in chosen:
        for a in (0.3, 0.6):
            print(f"  prf a={a:<4}          {measure(ix, asked, ranking.with_feedback(a))}")


def windows(chunks: list[str]) -> tuple[list[str], np.ndarray]:
    """Each chunk's body as windows of 40 words, stride 20, its header in front; and
    where each chunk's windows start."""
    texts, starts = [], []
    for chunk in chunks:
        head, _, body = chunk.partition("\n\n") if "\n\n" in chunk else ("", "", chunk)
        words = body.split() or [""]
        starts.append(len(texts))
        for at in range(0, max(1, len(words) - 20), 20):
            texts.append(
                f"{head}\n\n{' '.join(words[at : at + 40])}"
                if head
                else " ".join(words[at : at + 40])
            )
    return texts, np.array(starts)


def hypothetical_answers(questions: list[str]) -> list[str]:
    """SmolLM2-135M-Instruct's greedy one-line answer to each question (cached)."""
    import json

    from tunelab.models.loading import load_causal_lm, load_tokenizer
    from tunelab.models.registry import SMOLLM2, Registry

    path = CACHE / "hyde.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [q for q in questions if q not in known]
    if missing:
        spec = Registry.load().get(SMOLLM2)
        lm, tok = load_causal_lm(spec, CACHE / "models"), load_tokenizer(spec, CACHE / "models")
        for q in missing:
            ask = "Which Linux command does this? Name the command and say in one sentence "
            messages = [{"role": "user", "content": f"{ask}what it does.\n\n{q}"}]
            ids = tok.apply_chat_template(messages, add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)  # fmt: skip
            with torch.inference_mode():
                out = lm.generate(**ids, max_new_tokens=40, do_sample=False)
            known[q] = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        path.write_text(json.dumps(known, ensure_ascii=False))
    return [known[q] for q in questions]


def floor_of(model) -> float:  # type: ignore[no-untyped-def]
    vectors = model.encode(UNRELATED, normalize_embeddings=True)
    return similarity_floor(vectors, vectors)


def cloze_pairs(texts: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """(sentence, its chunk without it) pairs: up to two sentences of each chunk; one
    pair in ten keeps the sentence in (as inverse-cloze training does)."""
    pairs = []
    for text in texts:
        head, _, body = text.partition("\n\n")
        found = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+|\n\s*\n", body)]
        found = [s for s in found if len(s.split()) >= 4 and not s.startswith("-") and len(s) < 300]
        for s in rng.sample(found, min(2, len(found))):
            passage = body.replace(s, " ") if rng.random() < 0.9 else body
            pairs.append((s, f"{head}\n\n{passage}"))
    rng.shuffle(pairs)
    return pairs


def adapt(corpus: Corpus, epochs: float, lr: float) -> None:
    torch.manual_seed(0)
    model, _, prefix = load_model(MODEL)
    ix = index(corpus, MODEL, model, prefix, 800, 400, True)
    pairs = cloze_pairs(ix.texts, random.Random(0))
    steps = int(len(pairs) * epochs) // 32
    print(f"{corpus.name}: {len(pairs)} inverse-cloze pairs, {steps} steps of 32, lr {lr}")

    def report(when: str) -> None:
        matrix = model.encode(ix.texts, batch_size=64, normalize_embeddings=True)
        ranking = Ranking(ix, matrix, floor_of(model))
        for split in ("dev", "report"):
            questions = corpus.questions(split)
            vectors = model.encode([q.question for q in questions], normalize_embeddings=True)
            asked = list(zip(questions, vectors, strict=True))
            print(f"  {when:<6} {split:<6} hybrid {measure(ix, asked, ranking.hybrid)}")

    report("before")
    encoder, tokenizer = model[0].auto_model, model.tokenizer
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / steps)
    )

    def embed(texts: list[str], length: int) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=length,
                          return_tensors="pt")  # fmt: skip
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (encoder(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    encoder.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = pairs[(step * 32) % len(pairs) :][:32]
        sims = embed([q for q, _ in batch], 64) @ embed([p for _, p in batch], 256).T
        loss = torch.nn.functional.cross_entropy(sims * 20, torch.arange(len(batch)))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 20 == 0:
            print(f"  step {step} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    encoder.eval()
    report("after")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default="man-en,python-doc")
    ap.add_argument("--levers", default="header,filesum,prf")
    ap.add_argument("--adapt", default="", help="corpus to adapt the model on")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-5)
    args = ap.parse_args()
    corpora = {c.name: c for c in build(CACHE)[0]}
    if args.adapt:
        adapt(corpora[args.adapt], args.epochs, args.lr)
        return
    for name in args.corpora.split(","):
        levers(corpora[name], args.levers.split(","))


if __name__ == "__main__":
    main()
