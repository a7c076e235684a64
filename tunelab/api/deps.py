"""Request dependencies: the shared services and the caller's project.

Auth: with API keys configured (TUNELAB_API_KEYS and/or keys made with
`tunelab keys create`), every /v1 request needs `Authorization: Bearer KEY`; the
key decides the project. Keys are compared in constant time (hmac.compare_digest
against each configured key; sha256 lookups for stored keys) and never logged.
With no keys configured every request belongs to project "default" (and `serve`
refuses to listen on a non-loopback address).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from tunelab.db.tables import ApiKeyRow
from tunelab.errors import Unauthorized
from tunelab.services import Services

DEFAULT_PROJECT = "default"


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def keys_configured(services: Services) -> bool:
    if services.settings.parsed_api_keys():
        return True
    with services.db() as s:
        return s.execute(select(ApiKeyRow.id).limit(1)).first() is not None


def project_for_key(services: Services, key: str) -> str | None:
    match = None
    for item in services.settings.parsed_api_keys():
        # Compare against every key, without stopping early, in constant time.
        if hmac.compare_digest(item.key.encode(), key.encode()):
            match = item.project
    if match is not None:
        return match
    with services.db() as s:
        row = s.execute(
            select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(key))
        ).scalar_one_or_none()
    return row.project if row is not None else None


def current_project(request: Request, services: ServicesDep) -> str:
    # Checked per request, so keys made with `tunelab keys create` apply at once.
    if not keys_configured(services):
        return DEFAULT_PROJECT
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
            "(the openai SDK does this with api_key=...).",
            code="missing_api_key",
        )
    project = project_for_key(services, key.strip())
    if project is None:
        shown = key.strip()[:3] + "***" if len(key.strip()) > 6 else "***"
        raise Unauthorized(
            f"Incorrect API key provided: {shown}. Check TUNELAB_API_KEYS or `tunelab keys list`."
        )
    return project


ProjectDep = Annotated[str, Depends(current_project)]
