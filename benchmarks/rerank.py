"""Second-stage re-rankers over the hybrid's top k, for ranking_dev.py --rerank.

Two opinions a store could ask for without any model download:
- `upr` / `uprchat`: query likelihood (UPR, Sachan et al. 2022) with the embedded chat
  model SmolLM2-135M-Instruct: a candidate scores the mean log-probability of the
  question's tokens after "Passage: <chunk>\\nPlease write a question about this
  passage.\\nQuestion:" (plain prompt), or with the same request as the user turn
  of the chat template and the question as the assistant's reply (`uprchat`).
- `e5`: the cosine of multilingual-e5-small's "query: " / "passage: " vectors,
  a second dense model beside the store's MiniLM.

Scores are memoised per (question, chunk) and kept on disk, so a sweep over k and
mixing weights, or a rerun on the other split, scores each pair once.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from tunelab.models.loading import load_causal_lm, load_sentence_transformer, load_tokenizer
from tunelab.models.registry import SMOLLM2, Registry

INSTRUCTION = "Please write a question about this passage."


class Scorer:
    """score(question, texts) -> one number per text, higher = more relevant."""

    name = ""

    def __init__(self, cache: Path, models: Path) -> None:
        self.path = cache / "rerank" / f"{self.name}.json"
        self.memo: dict[str, float] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )
        self.models = models
        self.seconds = 0.0  # time spent computing new scores
        self.computed = 0  # (question, chunk) pairs computed
        self.batches = 0  # score_new calls (one per question that needed any)

    def score(self, question: str, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha256(f"{question}\0{t}".encode()).hexdigest()[:20] for t in texts]
        new = [i for i, k in enumerate(keys) if k not in self.memo]
        if new:
            t = time.perf_counter()
            values = self.score_new(question, [texts[i] for i in new])
            self.seconds += time.perf_counter() - t
            self.computed += len(new)
            self.batches += 1
            for i, v in zip(new, values, strict=True):
                self.memo[keys[i]] = float(v)
        return np.array([self.memo[k] for k in keys], dtype=np.float64)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.memo))

    def score_new(self, question: str, texts: list[str]) -> list[float]:
        raise NotImplementedError


class QueryLikelihood(Scorer):
    """Mean log p(question tokens | passage prompt) under SmolLM2-135M-Instruct."""

    name = "upr"
    chat = False

    def __init__(self, cache: Path, models: Path) -> None:
        super().__init__(cache, models)
        self.lm = None

    def prompt(self, text: str) -> str:
        request = f"Passage: {text}\n{INSTRUCTION}"
        if not self.chat:
            return request + "\nQuestion:"
        return str(
            self.tok.apply_chat_template(
                [{"role": "user", "content": request}], tokenize=False, add_generation_prompt=True
            )
        )

    def score_new(self, question: str, texts: list[str]) -> list[float]:
        import torch

        if self.lm is None:
            spec = Registry.load().get(SMOLLM2)
            self.tok = load_tokenizer(spec, self.models)
            self.lm = load_causal_lm(spec, self.models)
        answer = (" " if not self.chat else "") + question
        q_ids = self.tok(answer, add_special_tokens=False)["input_ids"]
        rows = [self.tok(self.prompt(t), add_special_tokens=False)["input_ids"] for t in texts]
        # Left padding puts every question at the end of its row, so the vocabulary
        # projection is needed for the last len(q_ids) + 1 positions only (over all
        # positions it costs a quarter of the model's work and ~1 GB of logits).
        # RoPE attention sees relative positions, so the shift the padding makes is harmless.
        width = max(len(r) for r in rows) + len(q_ids)
        ids = torch.full((len(rows), width), int(self.tok.pad_token_id))
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) - len(q_ids) :] = torch.tensor(r + q_ids)
            mask[i, width - len(r) - len(q_ids) :] = 1
        with torch.inference_mode():
            out = self.lm(input_ids=ids, attention_mask=mask, logits_to_keep=len(q_ids) + 1)
        # Position j of the kept logits predicts question token j.
        logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        picked = logp.gather(-1, torch.tensor(q_ids).expand(len(rows), -1).unsqueeze(-1))
        return [float(x) for x in picked.squeeze(-1).mean(dim=-1)]


class ChatQueryLikelihood(QueryLikelihood):
    name = "uprchat"
    chat = True


class SecondDense(Scorer):
    """multilingual-e5-small's query-passage cosine."""

    name = "e5"

    def __init__(self, cache: Path, models: Path) -> None:
        super().__init__(cache, models)
        self.model = None

    def score_new(self, question: str, texts: list[str]) -> list[float]:
        if self.model is None:
            spec = Registry.load().get("multilingual-e5-small")
            self.model = load_sentence_transformer(spec, self.models)
            self.q, self.p = spec.query_prefix, spec.passage_prefix
        vecs = self.model.encode(
            [self.q + question] + [self.p + t for t in texts], normalize_embeddings=True
        )
        return [float(v) for v in vecs[1:] @ vecs[0]]


SCORERS: dict[str, type[Scorer]] = {
    s.name: s for s in (QueryLikelihood, ChatQueryLikelihood, SecondDense)
}


def minmax(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min())
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def reorder(hybrid: np.ndarray, opinion: np.ndarray, weight: float) -> np.ndarray:
    """The order of the k candidates by (1 - weight) x hybrid + weight x opinion,
    each min-max normalised over the candidates (weight 1: the re-ranker alone)."""
    mixed = (1 - weight) * minmax(hybrid) + weight * minmax(opinion)
    return np.argsort(-mixed, kind="stable")
