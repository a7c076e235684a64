"""Checking a create-job request: every bad value is a 400 that names its parameter.

Hyperparameters come either in the deprecated top-level `hyperparameters` or in
`method.supervised.hyperparameters`; each is "auto" or a number in its range
(contract §2.2). tunelab adds one field there, `method`: "lora" (default) or "full".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tunelab.errors import InvalidRequest
from tunelab.protocol.fine_tuning import JobCreate

MAX_SUFFIX = 64
MAX_METADATA = 16
# Times the method's base learning rate (tunelab.training.config.BASE_LR): beyond
# this, training only diverges, and a huge value overflows into NaN weights.
MAX_LEARNING_RATE_MULTIPLIER = 1000.0


@dataclass
class Requested:
    """The checked hyperparameters: ints/floats, or "auto" where the user left it."""

    n_epochs: int | str
    batch_size: int | str
    learning_rate_multiplier: float | str
    method: str  # "lora" | "full"


def slug(text: str) -> str:
    """Lowercase; every run of punctuation or whitespace becomes one '-'.

    `first finetune!` -> `first-finetune`
    """
    return re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-")


def _number(value: Any, param: str, *, integer: bool, lo: float, hi: float) -> int | float | str:
    """`value` checked against [lo, hi] ("auto" passes). Never converts before the
    range is known to hold: a NaN, an infinity or a 400-digit integer is refused by
    name instead of failing inside int() or float()."""
    if value == "auto" or value is None:
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(
            f"Invalid {param}: {value!r}. Use 'auto' or a number.",
            param=param,
            code="invalid_value",
        )
    shown = value if isinstance(value, float) or abs(value) < 10**18 else "a very large number"
    rng = f"from {lo:g} to {hi:g}" if lo else f"greater than 0 and at most {hi:g}"
    in_range = (isinstance(value, int) or math.isfinite(value)) and lo <= value <= hi
    if not in_range or (lo == 0 and value <= 0):
        raise InvalidRequest(
            f"Invalid {param}: {shown!r}. It must be {rng}.", param=param, code="invalid_value"
        )
    if integer and value != int(value):
        raise InvalidRequest(
            f"Invalid {param}: {value!r} is not a whole number.", param=param, code="invalid_value"
        )
    return int(value) if integer else float(value)


def _whole(value: Any, param: str, *, lo: int, hi: int) -> int | str:
    n = _number(value, param, integer=True, lo=lo, hi=hi)
    return n if isinstance(n, str) else int(n)


def hyperparameters(req: JobCreate) -> Requested:
    where = "hyperparameters"
    hp = req.hyperparameters
    if req.method is not None:
        if req.method.type != "supervised":
            raise InvalidRequest(
                f"Training method '{req.method.type}' is not supported; use 'supervised'.",
                param="method.type",
                code="invalid_value",
            )
        if req.method.supervised is not None and req.method.supervised.hyperparameters is not None:
            if hp is not None:
                raise InvalidRequest(
                    "Give hyperparameters either at the top level or under "
                    "method.supervised, not both.",
                    param="hyperparameters",
                )
            hp = req.method.supervised.hyperparameters
            where = "method.supervised.hyperparameters"
    if hp is None:
        return Requested("auto", "auto", "auto", "lora")
    method = hp.method if hp.method not in (None, "auto") else "lora"
    if method not in ("lora", "full"):
        raise InvalidRequest(
            f"Invalid {where}.method: {method!r}. Use 'lora' (default) or 'full'.",
            param=f"{where}.method",
            code="invalid_value",
        )
    return Requested(
        n_epochs=_whole(hp.n_epochs, f"{where}.n_epochs", lo=1, hi=50),
        batch_size=_whole(hp.batch_size, f"{where}.batch_size", lo=1, hi=256),
        learning_rate_multiplier=_number(
            hp.learning_rate_multiplier,
            f"{where}.learning_rate_multiplier",
            integer=False,
            lo=0,
            hi=MAX_LEARNING_RATE_MULTIPLIER,
        ),
        method=method,
    )


def suffix(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SUFFIX:
        raise InvalidRequest(
            f"Invalid suffix: it must be 1 to {MAX_SUFFIX} characters long.",
            param="suffix",
            code="invalid_value",
        )
    return slug(value) or None


def metadata(value: dict[str, Any] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA:
        raise InvalidRequest(f"metadata may have at most {MAX_METADATA} keys.", param="metadata")
    for k, v in value.items():
        if not isinstance(v, str) or len(k) > 64 or len(v) > 512:
            raise InvalidRequest(
                f"Invalid metadata[{k!r}]: keys are strings up to 64 characters, "
                "values strings up to 512.",
                param="metadata",
                code="invalid_value",
            )
    return dict(value)


def seed(value: int | None, default: int) -> int:
    if value is None:
        return default
    if not 0 <= value <= 2**31 - 1:
        raise InvalidRequest("Invalid seed: use an integer from 0 to 2147483647.", param="seed")
    return value
