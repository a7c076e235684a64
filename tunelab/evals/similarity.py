"""Text-similarity metrics of the `text_similarity` grader, each from the library
that defines it (scores in 0..1):

  fuzzy_match   rapidfuzz `fuzz.ratio` / 100 (normalised Indel similarity)
  bleu          sacrebleu `sentence_bleu(input, [reference]).score` / 100
  gleu          nltk `sentence_gleu([reference words], input words)`
  meteor        nltk `meteor_score([reference words], input words)`, with WordNet read
                from Debian's `wordnet-base` package (/usr/share/wordnet)
  rouge_1..5, rouge_l   Google's rouge-score, F-measure (`rougeN` / `rougeL`)
  cosine        cosine of the two texts' embeddings (the embedding model; computed by
                the grader, which holds the embedder)

Words are split on whitespace for nltk, as its documentation does. The libraries
are imported on first use, so creating an eval stays cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

METRICS = (
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
    "cosine",
)
WORDNET_DIRS = (Path("/usr/share/wordnet"),)


def metric_unavailable(metric: str) -> str | None:
    """Why `metric` cannot run on this machine, or None when it can."""
    if metric == "meteor" and _wordnet_dir() is None:
        return (
            "The meteor metric needs the WordNet database, which is not installed on this "
            "server (Debian/Ubuntu: apt-get install wordnet-base). Use rouge_l, bleu or "
            "fuzzy_match meanwhile."
        )
    return None


def _wordnet_dir() -> Path | None:
    for d in WORDNET_DIRS:
        if (d / "data.noun").exists() and (d / "index.noun").exists():
            return d
    return None


@functools.cache
def _wordnet() -> Any:
    """nltk's WordNet reader over the Debian files. They lack `lexnames`, which nltk
    reads only to name the lexicographer files, so the reader gets a copy of them
    (nltk refuses links that leave its root) plus that standard list, in a directory
    added to nltk's data path (the only places it reads from)."""
    import shutil
    import tempfile

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    src = _wordnet_dir()
    if src is None:
        raise RuntimeError(metric_unavailable("meteor"))
    root = Path(tempfile.mkdtemp(prefix="tunelab-wordnet-"))
    for f in src.iterdir():
        if f.is_file():
            shutil.copyfile(f, root / f.name)
    lines = [f"{i:02d}\t{n}\t{_LEX_CATEGORY[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES)]
    (root / "lexnames").write_text("".join(lines), encoding="utf-8")
    nltk.data.path.append(str(root))

    class DebianWordNet(WordNetCorpusReader):  # type: ignore[misc]
        def map_wn(self, version: str = "wordnet") -> None:
            # The files are WordNet 3.0 itself: there is nothing to map (nltk would
            # look for its own downloaded copy to map multilingual data from).
            return None

    return DebianWordNet(str(root), None)


# WordNet 3.0's lexicographer file names, in their fixed numbering (lexnames(5WN)).
_LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_LEX_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


@functools.cache
def _rouge(key: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([key], use_stemmer=False)


def score(metric: str, text: str, reference: str) -> float:
    """The metric's score of `text` against `reference` (not for cosine)."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return float(fuzz.ratio(text, reference)) / 100.0
    if metric == "bleu":
        import sacrebleu

        return float(sacrebleu.sentence_bleu(text, [reference]).score) / 100.0
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu([reference.split()], text.split()))
    if metric == "meteor":
        from nltk.translate.meteor_score import meteor_score

        return float(meteor_score([reference.split()], text.split(), wordnet=_wordnet()))
    if metric.startswith("rouge_"):
        key = "rougeL" if metric == "rouge_l" else "rouge" + metric.removeprefix("rouge_")
        return float(_rouge(key).score(reference, text)[key].fmeasure)
    raise ValueError(f"unknown metric {metric!r}")
