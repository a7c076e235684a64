"""Vector stores, their files, file batches and search (contract §8)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    # Unknown fields are accepted and ignored, as OpenAI's clients may send newer ones.
    model_config = ConfigDict(extra="ignore")


# ------------------------------------------------------------------ requests


class CreateVectorStore(_Request):
    name: str | None = None
    description: str | None = None
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    chunking_strategy: dict[str, Any] | None = None
    expires_after: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class UpdateVectorStore(_Request):
    name: str | None = None
    expires_after: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class CreateVectorStoreFile(_Request):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class UpdateVectorStoreFile(_Request):
    attributes: dict[str, Any] | None


class BatchFile(_Request):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class CreateFileBatch(_Request):
    file_ids: list[str] | None = Field(default=None, max_length=2000)
    files: list[BatchFile] | None = Field(default=None, max_length=2000)
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class RankingOptions(_Request):
    ranker: str | None = None
    score_threshold: float = Field(default=0.0, ge=0.0, le=1.0)


class SearchRequest(_Request):
    query: str | list[str]
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False


# ------------------------------------------------------------------ objects


class FileCounts(BaseModel):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class ExpiresAfter(BaseModel):
    anchor: Literal["last_active_at"] = "last_active_at"
    days: int


class VectorStore(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str | None
    description: str | None = None
    usage_bytes: int
    file_counts: FileCounts
    status: str
    last_active_at: int | None
    expires_after: ExpiresAfter | None = None
    expires_at: int | None = None
    metadata: dict[str, str] | None = None


class LastError(BaseModel):
    code: str
    message: str


class StaticChunking(BaseModel):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class ChunkingStrategy(BaseModel):
    type: Literal["static"] = "static"
    static: StaticChunking


class VectorStoreFile(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    created_at: int
    vector_store_id: str
    usage_bytes: int
    status: str
    last_error: LastError | None = None
    attributes: dict[str, Any] | None = None
    chunking_strategy: ChunkingStrategy


class FileBatch(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: str
    file_counts: FileCounts


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class FileContentPage(BaseModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[TextPart]
    has_more: bool = False
    next_page: str | None = None


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any] | None = None
    content: list[TextPart]


class SearchResultsPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None
