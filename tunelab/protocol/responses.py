"""The subset of the Responses API tunelab serves: text or JSON answers, optionally
grounded by the `file_search` tool (with `file_citation` annotations), and calls of
the client's function tools."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelab.protocol.vector_stores import RankingOptions

# Stores one file_search call searches: each is a full search over its chunks.
MAX_SEARCH_STORES = 16


class FileSearchTool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1, max_length=MAX_SEARCH_STORES)
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None


class CreateResponse(BaseModel):
    # Extra fields are kept so that tunelab.retrieval.answers can refuse, by name,
    # the ones it does not implement instead of ignoring them.
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    include: list[str] = Field(default_factory=list)
    stream: bool = False
    metadata: dict[str, str] | None = None
    store: bool = True
    previous_response_id: str | None = None


class FileSearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any] | None = None


class FileSearchCall(BaseModel):
    id: str
    type: Literal["file_search_call"] = "file_search_call"
    status: Literal["completed"] = "completed"
    queries: list[str]
    results: list[FileSearchResult] | None = None


class FileCitation(BaseModel):
    type: Literal["file_citation"] = "file_citation"
    file_id: str
    filename: str
    index: int


class FunctionCall(BaseModel):
    """A call the model made; the client runs it and sends a function_call_output."""

    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str  # JSON text
    status: Literal["completed", "in_progress", "incomplete"] = "completed"


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[FileCitation] = Field(default_factory=list)


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["completed", "incomplete", "in_progress"] = "completed"
    content: list[OutputText]


class TokenDetails(BaseModel):
    cached_tokens: int = 0


class OutputDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: TokenDetails = Field(default_factory=TokenDetails)
    output_tokens_details: OutputDetails = Field(default_factory=OutputDetails)


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"] = "max_output_tokens"


class Response(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "in_progress"] = "completed"
    model: str
    output: list[FileSearchCall | FunctionCall | OutputMessage]
    output_text: str = ""
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    error: None = None
    incomplete_details: IncompleteDetails | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: Usage | None = None
    previous_response_id: str | None = None
    store: bool = True
