"""Which embedding model a new vector store indexes with, chosen by its first document.

all-MiniLM-L6-v2 (the default) was trained on English and ranks English pages best;
on Chinese pages with Chinese questions it finds the answer page in the first five
results for about a quarter of the questions, where multilingual-e5-small finds it
for over nine in ten, and e5 is worse than MiniLM on English (README, "Which model").
So unless a model is asked for, a store's model is settled by the first document
that it indexes: mostly Latin-script text keeps the default model, mostly other
scripts (Chinese, Japanese, Korean, Cyrillic, Arabic...) get the multilingual one.
The choice is made once and kept (`VectorStoreRow.embedding_model`), so one store
never mixes the vectors of two models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Basic Latin letters, Latin-1 Supplement and Latin Extended-A/B (accented letters).
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
SAMPLE_CHARS = 20_000


def mostly_latin(text: str) -> bool:
    """Whether at least half of the letters in the text's opening are Latin script.

    Counted over letters only, so code, numbers and punctuation do not vote; a
    document with no letters at all counts as Latin (the default model is as good as
    any for it).
    """
    sample = text[:SAMPLE_CHARS]
    letters = sum(1 for c in sample if c.isalpha())
    return letters == 0 or len(_LATIN.findall(sample)) * 2 >= letters


@dataclass(frozen=True)
class StoreModels:
    """The embedding models new vector stores are given.

    default:      the model for mostly Latin-script documents (concrete id).
    multilingual: the model for documents in other scripts, or None to give every
                  store the default.
    """

    default: str
    multilingual: str | None = None

    @property
    def at_creation(self) -> str:
        """What a new store records: its model, or "" when its first document decides."""
        if self.multilingual is None or self.multilingual == self.default:
            return self.default
        return ""

    def for_text(self, text: str) -> str:
        if self.multilingual is None or mostly_latin(text):
            return self.default
        return self.multilingual
