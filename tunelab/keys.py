"""API keys: which project a bearer key belongs to.

Two sources: keys configured in the environment (`TUNELAB_API_KEYS`, parsed by
Settings) and keys made with `tunelab keys create`, of which only a sha256 is
stored. Configured keys are compared in constant time (hmac.compare_digest
against every key, without stopping early); stored keys are looked up by hash.
Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from tunelab.db.base import Database, now
from tunelab.db.tables import ApiKeyRow
from tunelab.ids import new_id
from tunelab.settings import ApiKey

KEY_PREFIX = "tl-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class StoredKey:
    id: str
    prefix: str
    project: str
    name: str | None
    created_at: int


class KeyStore:
    def __init__(self, db: Database, configured: list[ApiKey]) -> None:
        self.db = db
        self.configured = configured

    def any_configured(self) -> bool:
        """True when requests must authenticate. Checked per request, so keys made
        with `tunelab keys create` apply at once."""
        if self.configured:
            return True
        with self.db() as s:
            return s.execute(select(ApiKeyRow.id).limit(1)).first() is not None

    def project_for(self, key: str) -> str | None:
        match = None
        for item in self.configured:
            if hmac.compare_digest(item.key.encode(), key.encode()):
                match = item.project
        if match is not None:
            return match
        with self.db() as s:
            row = s.execute(
                select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(key))
            ).scalar_one_or_none()
        return row.project if row is not None else None

    def create(self, project: str, name: str | None = None) -> str:
        """A new random key for `project`; only its hash is kept, so show it once."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.begin() as s:
            s.add(
                ApiKeyRow(
                    id=new_id("key_", 16),
                    key_hash=hash_key(key),
                    prefix=key[:7],
                    project=project,
                    name=name,
                    created_at=now(),
                )
            )
        return key

    def list(self) -> list[StoredKey]:
        with self.db() as s:
            rows = s.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).scalars()
            return [StoredKey(r.id, r.prefix, r.project, r.name, r.created_at) for r in rows]
