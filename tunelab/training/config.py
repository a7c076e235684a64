"""TrainConfig: every knob of one training run, validated up front, stored as JSON.

The jobs worker resolves "auto" hyperparameters (`auto_n_epochs`, `auto_batch_size`,
`auto_learning_rate_multiplier`, applied in `jobs.staging`) and writes the config to
`<job dir>/config.json`; the training process (`python -m tunelab.training
JOB_DIR`) reads it back. Nothing else crosses the process boundary, so a config file
is enough to reproduce a run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

METHODS = ("lora", "full")
OBJECTIVES = ("supervised", "dpo")
SCHEDULES = ("linear", "cosine")

# Base learning rates that `learning_rate_multiplier` scales. LoRA trains a few
# low-rank matrices from zero and tolerates (needs) a much larger step than full
# fine-tuning, which moves pretrained weights directly; these are the usual
# values for small instruction models.
BASE_LR = {"lora": 2e-4, "full": 1e-5}

# CPU training cost grows with the square of the sequence length in attention and
# linearly elsewhere; 2048 tokens covers realistic chat examples while keeping one
# example's activations small. A GPU run may raise it (max_length in the config).
CPU_MAX_LENGTH = 2048


class ConfigError(ValueError):
    """A bad config value; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass
class TrainConfig:
    # What to train
    base_model: str = field(metadata={"help": "registry id of the base model"})
    model_source: str = field(metadata={"help": "HF id or local dir of the base weights"})
    training_file: str = field(metadata={"help": "JSONL of training examples"})
    output_dir: str = field(metadata={"help": "checkpoints and the final model go here"})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside model_source"})
    model_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "from_pretrained kwargs"}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "where converted models are cached"}
    )
    init_adapter: str | None = field(
        default=None, metadata={"help": "LoRA adapter dir to continue training (an ft: model)"}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "JSONL of validation examples"}
    )

    # Method and hyperparameters
    method: str = field(default="lora", metadata={"help": "lora | full"})
    n_epochs: int = field(default=3, metadata={"help": "passes over the training file"})
    batch_size: int = field(default=1, metadata={"help": "examples per optimizer step"})
    learning_rate_multiplier: float = field(
        default=1.0, metadata={"help": "scales BASE_LR[method]"}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(
        default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: list[str] | str = field(
        default="all-linear", metadata={"help": "module names, or 'all-linear'"}
    )
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps warming up"})
    lr_schedule: str = field(
        default="linear", metadata={"help": "linear | cosine decay after warmup"}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    objective: str = field(
        default="supervised", metadata={"help": "supervised | dpo (preference pairs)"}
    )
    beta: float = field(default=0.1, metadata={"help": "DPO: strength of the reference anchor"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})

    # Execution
    seed: int = field(default=0, metadata={"help": "seeds data order, init and dropout"})
    max_length: int = field(
        default=CPU_MAX_LENGTH, metadata={"help": "longer examples are truncated"}
    )
    micro_batch_tokens: int = field(
        default=2048, metadata={"help": "tokens packed into one forward pass (memory bound)"}
    )
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | cuda:N"})
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 autocast; None = when supported"}
    )
    num_threads: int | None = field(
        default=None, metadata={"help": "torch threads; None = all cores"}
    )
    eval_interval: int = field(default=10, metadata={"help": "steps between validation batches"})
    eval_batch_examples: int = field(
        default=8, metadata={"help": "examples per periodic validation"}
    )
    keep_checkpoints: int = field(default=3, metadata={"help": "epoch checkpoints kept"})

    # Publishing checkpoints (tunelab.models.weights): None keeps them in output_dir only.
    blob_url: str | None = field(
        default=None, metadata={"help": "s3://bucket/prefix checkpoints are published to"}
    )
    s3_endpoint_url: str | None = field(
        default=None, metadata={"help": "a non-AWS S3 server (MinIO, Ceph, R2)"}
    )
    blob_cache_dir: str | None = field(
        default=None, metadata={"help": "the S3 backend's local cache folder"}
    )

    def __post_init__(self) -> None:
        self.validate()

    @property
    def learning_rate(self) -> float:
        return BASE_LR[self.method] * self.learning_rate_multiplier

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        _check_int(self, "n_epochs", 1, 50)
        _check_int(self, "batch_size", 1, 256)
        _check_int(self, "lora_r", 1, 1024)
        _check_int(self, "max_length", 8, 1 << 20)
        _check_int(self, "micro_batch_tokens", 8, 1 << 24)
        _check_int(self, "eval_interval", 1, 1 << 30)
        _check_int(self, "eval_batch_examples", 1, 1 << 20)
        _check_int(self, "keep_checkpoints", 1, 1000)
        _check_int(self, "seed", 0, 2**31 - 1)
        if self.method not in METHODS:
            raise ConfigError("method", f"must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.objective not in OBJECTIVES:
            raise ConfigError("objective", f"must be one of {', '.join(OBJECTIVES)}")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError("lr_schedule", f"must be one of {', '.join(SCHEDULES)}")
        _check_positive(self, "learning_rate_multiplier")
        _check_positive(self, "lora_alpha")
        _check_positive(self, "beta")
        for name, hi in (("lora_dropout", 1.0), ("warmup_ratio", 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < hi:
                raise ConfigError(name, f"must be a number in [0, {hi}), not {v!r}")
        if self.method == "full" and self.init_adapter:
            raise ConfigError("method", "a LoRA model can only be continued with method 'lora'")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], "unknown config field")
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_json(path.read_text(encoding="utf-8"))


def _check_int(cfg: TrainConfig, name: str, lo: int, hi: int) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(name, f"must be an integer from {lo} to {hi}, not {v!r}")


def _check_positive(cfg: TrainConfig, name: str) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(name, f"must be a number greater than 0, not {v!r}")


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return -(-n_examples // batch_size)


def auto_n_epochs(n_examples: int) -> int:
    """OpenAI's rule: aim for 3 epochs, but at least ~100 and at most ~25k example visits."""
    if 3 * n_examples < 100:
        return min(25, 100 // max(1, n_examples))
    if 3 * n_examples > 25_000:
        return max(1, 25_000 // n_examples)
    return 3


def auto_batch_size(n_examples: int) -> int:
    """Small datasets learn best with many small steps; larger ones batch up to 8.

    One example per step below 64 examples (like OpenAI's observed batch_size=1 for
    small jobs), then ~1 per 16 examples up to 8. Packing makes bigger batches
    cheaper per token, so 8 keeps CPU throughput high without starving the
    optimizer of steps.
    """
    return max(1, min(8, n_examples // 16)) if n_examples >= 64 else 1


def auto_learning_rate_multiplier(batch_size: int) -> float:
    """Bigger batches average away gradient noise and take proportionally larger steps.

    sqrt scaling from 1.0 at batch 1, capped at 2.0 (reached at batch 4).
    """
    return round(min(2.0, math.sqrt(batch_size)), 2)
