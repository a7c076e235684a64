"""Settings: the only module that reads the environment.

Every value has a default, can be set with a `TUNELAB_*` variable, and is passed
down explicitly (`build_runtime(settings)` hands each service what it needs);
nothing else looks at os.environ. Precedence: defaults < environment <
command-line flags.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The most prompts one /v1/completions request may send (tunelab.limits.MAX_PROMPTS,
# which lives above this module; a unit test keeps the two equal). Each prompt is one
# queued generation, so a queue shorter than this would refuse such a request with a
# retryable 503 that no retry could get past.
MAX_PROMPTS_PER_REQUEST = 16
# Below this a body limit refuses ordinary requests (a chat request with a few messages,
# a multipart upload's own headers), whatever they hold.
MIN_BODY_BYTES = 4096
# TUNELAB_* variables that are not settings: read by the compatibility suite
# (compat/run.py) and the fuzz tests, or set by the training supervisor for the
# processes it starts (tunelab.training.events). Any other unknown TUNELAB_* name is
# refused at startup: a misspelt or removed setting must not be silently ignored.
NOT_SETTINGS = frozenset(
    {"TUNELAB_COMPAT_CACHE", "TUNELAB_FUZZ_EXAMPLES", "TUNELAB_SUPERVISOR_PID"}
)


def _default_data_dir() -> Path:
    return Path.home() / ".tunelab"


@dataclass(frozen=True)
class ApiKey:
    """One configured API key and the project it belongs to."""

    key: str
    project: str


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNELAB_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    # Defaults to SQLite under data_dir; any SQLAlchemy URL works (postgresql://...).
    database_url: str | None = None
    # Comma-separated KEY:PROJECT items; a bare KEY belongs to project "default". A key
    # holding ',' or ':' is given as a JSON object instead: {"KEY": "PROJECT", ...}.
    # Anything ambiguous is refused at startup (parse_api_keys), never reinterpreted.
    api_keys: str = ""
    # /docs, /redoc and /openapi.json: "auto" serves them only while no API key is
    # configured (they describe the whole API to anyone who asks).
    api_docs: Literal["auto", "on", "off"] = "auto"
    host: str = "127.0.0.1"
    port: int = 8000

    # Converted models (GGUF -> safetensors) live here; defaults to data_dir/cache.
    cache_dir: Path | None = None
    # "auto" picks cuda when available, else cpu.
    device: str = "auto"

    default_chat_model: str = "smollm2-135m-instruct"
    # New vector stores index with this model (kept per store), and OpenAI's
    # text-embedding-* names are aliases of it. all-minilm-l6-v2 ranks English best;
    # multilingual-e5-small is far better for Chinese and mixed corpora (README).
    default_embedding_model: str = "all-minilm-l6-v2"
    # ...except a new vector store whose first document is mostly in another script
    # than Latin (Chinese, Japanese, Korean, Cyrillic...): it indexes with this model
    # (tunelab/retrieval/language.py). "" gives every new store the default model.
    multilingual_embedding_model: str = "multilingual-e5-small"

    # Request bodies (tunelab.limits lists every other bound): one uploaded file or
    # upload part, and any other body. Both are counted while the body streams in,
    # after the key is checked, so an oversized or unauthenticated body is never stored.
    max_upload_bytes: int = 512 * 1024 * 1024
    max_request_bytes: int = 16 * 1024 * 1024

    # Embeddings micro-batching: requests waiting while the model computes share the
    # next forward pass, up to embed_max_batch texts; after a batch of N requests the
    # worker waits up to this long for N callers to come back (a lone caller never waits).
    embed_batch_window_ms: float = 5.0
    embed_max_batch: int = 256
    # bf16 autocast for embeddings (cosine to fp32 > 0.9999). None = when the
    # hardware has native bf16 (GPU, or a CPU with AMX / AVX512-BF16).
    embed_bf16: bool | None = None

    # Inference: LoRA adapters kept attached, and the bound on waiting requests.
    adapter_cache_size: int = 8
    # A batch that uses one adapter alone runs on a merged copy of the weights it
    # changes (the base's speed: peft's unmerged LoRA costs ~20% a token on a CPU);
    # copies are kept while they fit in this many MiB, 0 turns merging off.
    merged_adapter_memory_mb: int = Field(default=1024, ge=0)
    max_queued_requests: int = 64
    # Output tokens when a request names no max_tokens / max_output_tokens. None is
    # OpenAI's rule (whatever room the context window leaves: thousands of tokens, many
    # minutes on a CPU for a model that never says stop); an operator can cap it.
    # A request that names a value may still ask for up to the context window.
    default_max_tokens: int | None = Field(default=None, ge=1)
    # Sequences decoded together in one batch per loaded model (n choices count each).
    max_batch_size: int = 16
    # Weights' dtype for serving: "auto" is bfloat16 where the device computes it
    # natively (AVX512-BF16/AMX CPUs, GPUs with bf16), float32 elsewhere (emulated
    # bf16 is slower than fp32).
    inference_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # fp32 (and, on CPUs with bf16 kernels, bf16) linear layers of models served on the
    # CPU run on a oneDNN-packed copy of their weights (2-3x faster for several streams;
    # twice the linear weights' memory): tunelab.models.packed.
    packed_weights: bool = True
    # Full fine-tunes loaded at once are kept under this many MiB of weights.
    full_model_memory_mb: int = 4096
    # Models whose registry entry says "engine": "llama.cpp": the tokens their shared
    # key/value cache holds for all running sequences together (allocated at load;
    # at least one context window), and CPU threads (0: every core).
    llamacpp_cache_tokens: int = 32768
    llamacpp_threads: int = Field(default=0, ge=0)

    # What the CLI talks to (TUNELAB_BASE_URL, TUNELAB_API_KEY).
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str | None = None

    # Jobs: run a worker inside `serve` (more can run with `tunelab worker`).
    embedded_worker: bool = True
    worker_poll_seconds: float = 1.0
    # A running job whose worker has not heart-beaten for this long is taken back
    # (re-queued from its last checkpoint, or failed after 3 starts).
    worker_stale_seconds: float = 30.0
    # bf16 autocast in training: None = when the CPU/GPU has native bf16. On a CPU
    # whose cores are shared with other busy processes fp32 can be faster
    # (benchmarks/training.py measures both).
    training_bf16: bool | None = None
    # Training processes per job on this worker's machine: above 1 the worker starts
    # supervised jobs under torchrun (data parallel; gloo on CPU, nccl on GPU, one GPU
    # per process). train_torchrun_args replaces torchrun's `--standalone` for a
    # multi-node rendezvous (docs/deployment.md).
    train_processes: int = Field(default=1, ge=1, le=1024)
    train_torchrun_args: str = ""

    # Uploaded files in an S3-compatible bucket instead of data_dir/files, and
    # fine-tuned weights published there too (tunelab.models.weights), so machines
    # need not share a data dir: "s3://bucket/prefix". Credentials come from
    # boto3's chain (AWS_* variables, ~/.aws); s3_endpoint_url names a non-AWS
    # server (MinIO, Ceph, R2).
    blob_url: str | None = None
    s3_endpoint_url: str | None = None

    # When set, GET /metrics needs `Authorization: Bearer <this>` (docs/deployment.md).
    metrics_token: str | None = None

    @field_validator("data_dir", "cache_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser().resolve() if v is not None else None

    @field_validator(
        "port",
        "embed_max_batch",
        "adapter_cache_size",
        "max_batch_size",
        "full_model_memory_mb",
        "llamacpp_cache_tokens",
        "worker_poll_seconds",
        "worker_stale_seconds",
        mode="after",
    )
    @classmethod
    def _positive(cls, v: float, info: ValidationInfo) -> float:
        # Zero or less would make the server refuse (or never run) every request of a
        # kind; say so at startup instead.
        if v <= 0:
            raise ValueError(f"{_var(info)} must be above 0, got {v}")
        return v

    @field_validator("embed_batch_window_ms", mode="after")
    @classmethod
    def _not_negative(cls, v: float, info: ValidationInfo) -> float:
        if not v >= 0:  # NaN too
            raise ValueError(f"{_var(info)} must be 0 or more, got {v}")
        return v

    @field_validator("max_upload_bytes", "max_request_bytes", mode="after")
    @classmethod
    def _body_limit(cls, v: int, info: ValidationInfo) -> int:
        if v < MIN_BODY_BYTES:
            raise ValueError(
                f"{_var(info)} is {v}; below {MIN_BODY_BYTES} bytes it refuses ordinary requests"
            )
        return v

    @field_validator("max_queued_requests", mode="after")
    @classmethod
    def _queue_fits_a_request(cls, v: int, info: ValidationInfo) -> int:
        if v < MAX_PROMPTS_PER_REQUEST:
            raise ValueError(
                f"{_var(info)} is {v}; it must be at least {MAX_PROMPTS_PER_REQUEST}, the "
                "prompts one /v1/completions request may queue, or such a request is refused "
                "with a 503 no retry can get past"
            )
        return v

    @field_validator("api_keys", mode="after")
    @classmethod
    def _keys_parse(cls, v: str) -> str:
        parse_api_keys(v)  # a malformed value stops the server at startup, saying why
        return v

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> Settings:
        known = {f"TUNELAB_{name.upper()}" for name in type(self).model_fields}
        allowed = known | NOT_SETTINGS
        unknown = sorted(
            name
            for name in os.environ
            if name.upper().startswith("TUNELAB_") and name.upper() not in allowed
        )
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name.upper(), sorted(known), n=1)
                hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
            raise ValueError(
                f"unknown setting {', '.join(hints)}: unset it or use one of the TUNELAB_* "
                "variables that docs/*.md list (a removed setting no longer does anything)"
            )
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the environment, with the given non-None values on top
        (command-line flags win over TUNELAB_* variables)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**given)  # type: ignore[arg-type]  # validated by pydantic, per field

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'tunelab.db'}"

    @property
    def model_cache_dir(self) -> Path:
        return self.cache_dir or (self.data_dir / "cache")

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def blob_cache_dir(self) -> Path:
        """Local copies of blobs read from object storage (TUNELAB_BLOB_URL)."""
        return self.data_dir / "blob-cache"

    @property
    def models_dir(self) -> Path:
        """Fine-tuned adapters, checkpoints and full fine-tunes (with blob_url: this
        machine's copies of those published to the bucket)."""
        return self.data_dir / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def vectors_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def registry_file(self) -> Path:
        """Extra models (Hugging Face ids or local dirs) a user registers."""
        return self.data_dir / "models.json"

    def parsed_api_keys(self) -> list[ApiKey]:
        return parse_api_keys(self.api_keys)


_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_KEY = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no spaces: a header value


def _var(info: ValidationInfo) -> str:
    """The environment variable of the field being validated."""
    return f"TUNELAB_{str(info.field_name).upper()}"


def parse_api_keys(value: str) -> list[ApiKey]:
    """TUNELAB_API_KEYS as keys and projects; ValueError saying what to fix.

    Either `KEY[:PROJECT],KEY[:PROJECT]...` or a JSON object `{"KEY": "PROJECT"}`
    (for keys holding ',' or ':'). A key is 1-256 printable ASCII characters without
    spaces (what an Authorization header carries); a project is 1-64 letters, digits,
    '_', '.' or '-'. An item with two ':' is refused: it could be read two ways.
    """
    value = value.strip()
    pairs: list[tuple[str, str]] = []
    if value.startswith("{"):
        try:
            obj = json.loads(value)
        except ValueError as e:
            raise ValueError(f"TUNELAB_API_KEYS is not a valid JSON object: {e}") from None
        if not isinstance(obj, dict) or not all(isinstance(p, str) for p in obj.values()):
            raise ValueError(
                'TUNELAB_API_KEYS as JSON must map keys to projects: {"KEY": "PROJECT"}'
            )
        pairs = list(obj.items())
    else:
        for n, item in enumerate(value.split(","), 1):
            item = item.strip()
            if not item:
                continue
            if item.count(":") > 1:
                raise ValueError(
                    f"TUNELAB_API_KEYS item {n} has more than one ':', so its key and project "
                    "are ambiguous; give keys holding ':' or ',' as JSON: {\"KEY\": \"PROJECT\"}"
                )
            key, _, project = item.partition(":")
            pairs.append((key.strip(), project.strip() or "default"))
    keys: dict[str, str] = {}
    for n, (key, project) in enumerate(pairs, 1):
        if not _KEY.fullmatch(key):
            raise ValueError(
                f"TUNELAB_API_KEYS key {n} is not 1-256 printable ASCII characters without "
                "spaces (the key itself is not shown)"
            )
        if not _PROJECT.fullmatch(project):
            raise ValueError(
                f"TUNELAB_API_KEYS project {project[:64]!r} (key {n}) must be 1-64 letters, "
                "digits, '_', '.' or '-'"
            )
        if keys.get(key, project) != project:
            raise ValueError(f"TUNELAB_API_KEYS gives key {n} to two projects")
        keys[key] = project
    return [ApiKey(key=k, project=p) for k, p in keys.items()]
