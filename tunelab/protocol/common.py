"""Wire shapes shared across resources."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
