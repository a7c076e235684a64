"""Tables of the retrieval feature: vector stores, their files, batches and chunks.

Chunk vectors are float32 blobs next to their text (`vector_store_chunks.embedding`),
so a store lives and dies transactionally with its rows, on SQLite and PostgreSQL
alike; `index.DenseIndex` caches each store's matrix in RAM. Each chunk also carries
its keyword terms (`keyword_terms`, see `terms.py`), from which `index.KeywordIndex`
builds the store's BM25 index in RAM.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tunelab.db.base import Base


class VectorStoreRow(Base):
    __tablename__ = "vector_stores"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str | None] = mapped_column(String(512), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    embedding_model: Mapped[str] = mapped_column(String(256))
    # Whether the first document the store indexed is mostly Latin script
    # (`language.mostly_latin`); None until one is. Hybrid search counts a query's
    # words only against a store of the query's own script (`search.Searcher`).
    mostly_latin: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # Bumped whenever the store's chunks change, so every server process knows
    # when its cached matrix is stale.
    index_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    last_active_at: Mapped[int] = mapped_column(BigInteger)


class VectorStoreFileRow(Base):
    __tablename__ = "vector_store_files"
    __table_args__ = (Index("ix_vector_store_files_status_worker", "status", "worker_id"),)

    vector_store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    filename: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16))  # in_progress|completed|failed|cancelled
    last_error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attributes_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    max_chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap_tokens: Mapped[int] = mapped_column(Integer)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Each (re)attach gets a new attempt number; ingestion only commits its chunks
    # when the attempt it started for is still the current one.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    # Ingestion is claimed from this table (migration 0012): the process indexing the
    # file, when it last proved alive, and how many times indexing was started.
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class FileBatchRow(Base):
    __tablename__ = "vector_store_file_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    vector_store_id: Mapped[str] = mapped_column(String(64), index=True)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)


class FileBatchMemberRow(Base):
    __tablename__ = "vector_store_file_batch_files"

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector_store_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)


class ChunkRow(Base):
    __tablename__ = "vector_store_chunks"
    __table_args__ = (Index("ix_vector_store_chunks_store_file", "vector_store_id", "file_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)  # chunk number within the file
    text: Mapped[str] = mapped_column(Text)
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    n_tokens: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised
    # (term hash, count) pairs; NULL on rows written before migration 0005.
    keyword_terms: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
