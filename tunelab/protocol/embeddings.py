"""The embeddings request (contract §7). The route writes the response JSON itself:
validating up to 2048 vectors of floats through pydantic is measurable overhead."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None)
    user: str | None = None
