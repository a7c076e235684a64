"""Settings: the only module that reads the environment.

Every value has a default, can be set with a `TUNELAB_*` variable, and is passed
down explicitly (`build_runtime(settings)` hands each service what it needs);
nothing else looks at os.environ. Precedence: defaults < environment <
command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Comma-separated KEY:PROJECT items; a bare KEY belongs to project "default".
    api_keys: str = ""
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

    max_upload_bytes: int = 512 * 1024 * 1024

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
    max_queued_requests: int = 64
    # Sequences decoded together in one batch per loaded model (n choices count each).
    max_batch_size: int = 16
    # Weights' dtype for serving: "auto" is bfloat16 where the device computes it
    # natively (AVX512-BF16/AMX CPUs, GPUs with bf16), float32 elsewhere (emulated
    # bf16 is slower than fp32).
    inference_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Full fine-tunes loaded at once are kept under this many MiB of weights.
    full_model_memory_mb: int = 4096

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

    @field_validator("data_dir", "cache_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser().resolve() if v is not None else None

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
    def models_dir(self) -> Path:
        """Fine-tuned adapters, checkpoints and full fine-tunes."""
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
        keys = []
        for item in self.api_keys.split(","):
            item = item.strip()
            if not item:
                continue
            key, _, project = item.partition(":")
            keys.append(ApiKey(key=key.strip(), project=project.strip() or "default"))
        return keys
