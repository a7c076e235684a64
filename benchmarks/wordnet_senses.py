"""Real labelled data nobody here wrote: WordNet definitions and their lexical category.

Source: Debian's `wordnet-base` package (`apt-get install wordnet-base`), which ships
Princeton WordNet 3.0 in /usr/share/wordnet. Every noun synset in `data.noun` carries
its lexicographer file (noun.animal, noun.food, ...), assigned by WordNet's
lexicographers, and a definition (the gloss before its examples). The task: given a
definition, name its category — 8 categories, 40 training and 15 held-out
definitions each (320 / 120), sampled with a fixed seed so the files are the same on
every machine with the same package version.

    python benchmarks/wordnet_senses.py OUT_DIR     # writes train.jsonl and heldout.jsonl

Lines are chat examples: {"messages": [system, user: definition, assistant: label]}.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
# WordNet's lexicographer file numbers (lexnames(5WN)) -> the label the model learns.
CATEGORIES = {
    5: "animal",
    6: "artifact",
    8: "body",
    13: "food",
    15: "location",
    18: "person",
    20: "plant",
    28: "time",
}
N_TRAIN, N_HELDOUT, SEED = 40, 15, 20261129
SYSTEM = (
    "Classify the dictionary definition into one category: "
    + ", ".join(sorted(CATEGORIES.values()))
    + ". Answer with the category only."
)


def definitions(wordnet: Path = WORDNET) -> dict[str, list[str]]:
    """Label -> definitions (short, unique), in file order."""
    out: dict[str, list[str]] = {label: [] for label in CATEGORIES.values()}
    seen: set[str] = set()
    for line in (wordnet / "data.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith("  ") or "|" not in line:
            continue  # the license header
        fields, gloss = line.split("|", 1)
        label = CATEGORIES.get(int(fields.split()[1]))
        definition = gloss.split(";")[0].strip()
        if label is None or not 20 <= len(definition) <= 120 or definition in seen:
            continue
        seen.add(definition)
        out[label].append(definition)
    return out


def example(definition: str, label: str) -> dict[str, object]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": definition},
            {"role": "assistant", "content": label},
        ]
    }


def build(out_dir: Path) -> tuple[Path, Path]:
    rng = random.Random(SEED)
    train, heldout = [], []
    for label, defs in sorted(definitions().items()):
        picked = rng.sample(defs, N_TRAIN + N_HELDOUT)
        train += [example(d, label) for d in picked[:N_TRAIN]]
        heldout += [example(d, label) for d in picked[N_TRAIN:]]
    rng.shuffle(train)
    rng.shuffle(heldout)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "train.jsonl", out_dir / "heldout.jsonl"
    for path, rows in zip(paths, (train, heldout), strict=True):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


if __name__ == "__main__":
    for p in build(Path(sys.argv[1] if len(sys.argv) > 1 else "wordnet-senses")):
        print(p)
