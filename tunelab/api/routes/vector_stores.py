"""Vector Stores API (contract §8): stores, their files, file batches and search.

Responses that the SDK's pollers re-fetch carry
`openai-poll-after-ms` so `create_and_poll` / `upload_and_poll` poll briskly.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from tunelab.api.deps import ProjectDep, SearcherDep, StoresDep
from tunelab.api.jsonbody import ApiRoute
from tunelab.api.pagination import list_page
from tunelab.db.pagination import check_limit
from tunelab.errors import InvalidRequest
from tunelab.protocol.common import Deleted
from tunelab.protocol.vector_stores import (
    ChunkingStrategy,
    CreateFileBatch,
    CreateVectorStore,
    CreateVectorStoreFile,
    ExpiresAfter,
    FileBatch,
    FileContentPage,
    FileCounts,
    LastError,
    SearchRequest,
    SearchResult,
    SearchResultsPage,
    StaticChunking,
    TextPart,
    UpdateVectorStore,
    UpdateVectorStoreFile,
    VectorStore,
    VectorStoreFile,
)
from tunelab.retrieval.params import parse_chunking
from tunelab.retrieval.rewrite import rewrite_query
from tunelab.retrieval.stores import StoreView, VectorStores
from tunelab.retrieval.tables import FileBatchRow, VectorStoreFileRow

router = APIRouter(route_class=ApiRoute)
POLL_AFTER_MS = "200"


def store_to_wire(v: StoreView) -> VectorStore:
    row = v.row
    return VectorStore(
        id=row.id,
        created_at=row.created_at,
        name=row.name,
        description=row.description,
        usage_bytes=v.usage_bytes,
        file_counts=FileCounts(**v.counts),
        status=v.status,
        last_active_at=row.last_active_at,
        expires_after=ExpiresAfter(days=row.expires_after_days) if row.expires_after_days else None,
        expires_at=v.expires_at,
        metadata=json.loads(row.metadata_json) if row.metadata_json else {},
    )


def file_to_wire(row: VectorStoreFileRow) -> VectorStoreFile:
    return VectorStoreFile(
        id=row.file_id,
        created_at=row.created_at,
        vector_store_id=row.vector_store_id,
        usage_bytes=row.usage_bytes,
        status=row.status,
        last_error=LastError(code=row.last_error_code, message=row.last_error_message or "")
        if row.last_error_code
        else None,
        attributes=json.loads(row.attributes_json) if row.attributes_json else {},
        chunking_strategy=ChunkingStrategy(
            static=StaticChunking(
                max_chunk_size_tokens=row.max_chunk_tokens,
                chunk_overlap_tokens=row.chunk_overlap_tokens,
            )
        ),
    )


def _poll(response: Response) -> None:
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS


# ------------------------------------------------------------------ stores


@router.post("/vector_stores")
def create_store(body: CreateVectorStore, stores: StoresDep, project: ProjectDep) -> VectorStore:
    view = stores.create(
        project,
        name=body.name,
        description=body.description,
        file_ids=body.file_ids,
        chunking_strategy=body.chunking_strategy,
        expires_after=body.expires_after,
        metadata=body.metadata,
    )
    return store_to_wire(view)


@router.get("/vector_stores")
def list_stores(
    stores: StoresDep,
    project: ProjectDep,
    limit: Annotated[int, Query()] = 20,
    order: str = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    check_limit(limit, 100)
    views, more = stores.list(project, after=after, limit=limit, order=order)
    return list_page([store_to_wire(v) for v in views], more)


@router.get("/vector_stores/{store_id}")
def retrieve_store(store_id: str, stores: StoresDep, project: ProjectDep) -> VectorStore:
    return store_to_wire(stores.get(project, store_id))


@router.post("/vector_stores/{store_id}")
def update_store(
    store_id: str, body: UpdateVectorStore, stores: StoresDep, project: ProjectDep
) -> VectorStore:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    return store_to_wire(stores.update(project, store_id, fields))


@router.delete("/vector_stores/{store_id}")
def delete_store(store_id: str, stores: StoresDep, project: ProjectDep) -> Deleted:
    stores.delete(project, store_id)
    return Deleted(id=store_id, object="vector_store.deleted")


@router.post("/vector_stores/{store_id}/search")
def search_store(
    store_id: str, body: SearchRequest, searcher: SearcherDep, project: ProjectDep
) -> SearchResultsPage:
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    if body.rewrite_query:  # searched as rewritten, and `search_query` says so
        queries = [rewrite_query(q) for q in queries]
    ranking = body.ranking_options
    hits = searcher.search_stores(
        project,
        [store_id],
        queries,
        max_results=body.max_num_results,
        filters=body.filters,
        ranker=ranking.ranker if ranking else None,
        score_threshold=ranking.score_threshold if ranking else 0.0,
    )
    return SearchResultsPage(
        search_query=queries,
        data=[
            SearchResult(
                file_id=h.file_id,
                filename=h.filename,
                score=round(h.score, 6),
                attributes=h.attributes,
                content=[TextPart(text=h.text)],
            )
            for h in hits
        ],
    )


# ------------------------------------------------------------------ files


@router.post("/vector_stores/{store_id}/files")
def attach_file(
    store_id: str,
    body: CreateVectorStoreFile,
    stores: StoresDep,
    response: Response,
    project: ProjectDep,
) -> VectorStoreFile:
    chunking = parse_chunking(body.chunking_strategy)
    row = stores.attach(
        project, store_id, body.file_id, attributes=body.attributes, chunking=chunking
    )
    _poll(response)
    return file_to_wire(row)


@router.get("/vector_stores/{store_id}/files")
def list_store_files(
    store_id: str,
    stores: StoresDep,
    project: ProjectDep,
    limit: Annotated[int, Query()] = 20,
    order: str = "desc",
    after: str | None = None,
    filter: str | None = None,
) -> dict[str, Any]:
    check_limit(limit, 100)
    rows, more = stores.list_files(
        project, store_id, status=filter, after=after, limit=limit, order=order
    )
    return list_page([file_to_wire(r) for r in rows], more)


@router.get("/vector_stores/{store_id}/files/{file_id}")
def retrieve_store_file(
    store_id: str, file_id: str, stores: StoresDep, response: Response, project: ProjectDep
) -> VectorStoreFile:
    _poll(response)
    return file_to_wire(stores.get_file(project, store_id, file_id))


@router.post("/vector_stores/{store_id}/files/{file_id}")
def update_store_file(
    store_id: str,
    file_id: str,
    body: UpdateVectorStoreFile,
    stores: StoresDep,
    project: ProjectDep,
) -> VectorStoreFile:
    return file_to_wire(stores.update_file(project, store_id, file_id, body.attributes))


@router.delete("/vector_stores/{store_id}/files/{file_id}")
def detach_file(store_id: str, file_id: str, stores: StoresDep, project: ProjectDep) -> Deleted:
    stores.detach(project, store_id, file_id)
    return Deleted(id=file_id, object="vector_store.file.deleted")


@router.get("/vector_stores/{store_id}/files/{file_id}/content")
def store_file_content(
    store_id: str, file_id: str, stores: StoresDep, project: ProjectDep
) -> FileContentPage:
    text = stores.file_text(project, store_id, file_id)
    return FileContentPage(data=[TextPart(text=text)] if text else [])


# ------------------------------------------------------------------ batches


def batch_to_wire(stores: VectorStores, project: str, store_id: str, batch_id: str) -> FileBatch:
    batch, counts, status = stores.batch_view(project, store_id, batch_id)
    return FileBatch(
        id=batch.id,
        created_at=batch.created_at,
        vector_store_id=batch.vector_store_id,
        status=status,
        file_counts=FileCounts(**counts),
    )


@router.post("/vector_stores/{store_id}/file_batches")
def create_batch(
    store_id: str,
    body: CreateFileBatch,
    stores: StoresDep,
    response: Response,
    project: ProjectDep,
) -> FileBatch:
    if (body.file_ids is None) == (body.files is None):
        raise InvalidRequest("Pass exactly one of 'file_ids' or 'files'.", param="file_ids")
    default_chunking = parse_chunking(body.chunking_strategy)
    if body.files is not None:
        items = [
            (
                f.file_id,
                f.attributes if f.attributes is not None else body.attributes,
                parse_chunking(f.chunking_strategy, f"files[{n}].chunking_strategy")
                if f.chunking_strategy
                else default_chunking,
            )
            for n, f in enumerate(body.files)
        ]
    else:
        items = [(fid, body.attributes, default_chunking) for fid in body.file_ids or []]
    if not items:
        raise InvalidRequest("A file batch needs at least one file.", param="file_ids")
    batch: FileBatchRow = stores.create_batch(project, store_id, items)
    _poll(response)
    return batch_to_wire(stores, project, store_id, batch.id)


@router.get("/vector_stores/{store_id}/file_batches/{batch_id}")
def retrieve_batch(
    store_id: str, batch_id: str, stores: StoresDep, response: Response, project: ProjectDep
) -> FileBatch:
    _poll(response)
    return batch_to_wire(stores, project, store_id, batch_id)


@router.post("/vector_stores/{store_id}/file_batches/{batch_id}/cancel")
def cancel_batch(store_id: str, batch_id: str, stores: StoresDep, project: ProjectDep) -> FileBatch:
    stores.cancel_batch(project, store_id, batch_id)
    return batch_to_wire(stores, project, store_id, batch_id)


@router.get("/vector_stores/{store_id}/file_batches/{batch_id}/files")
def list_batch_files(
    store_id: str,
    batch_id: str,
    stores: StoresDep,
    project: ProjectDep,
    limit: Annotated[int, Query()] = 20,
    order: str = "desc",
    after: str | None = None,
    filter: str | None = None,
) -> dict[str, Any]:
    check_limit(limit, 100)
    stores = stores
    stores.batch_view(project, store_id, batch_id)  # 404 for an unknown batch
    rows, more = stores.list_files(
        project, store_id, status=filter, after=after, limit=limit, order=order, batch_id=batch_id
    )
    return list_page([file_to_wire(r) for r in rows], more)
