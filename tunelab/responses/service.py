"""`POST /v1/responses`: retrieve, prompt, generate, cite.

A request is parsed and, with a `file_search` tool, grounded in the vector
stores' best passages (the prompt layout is `retrieval.grounding`, shared with
`tunelab ground-data` so training prompts match served ones); generation goes
through the inference service, whichever chat engine sits below it. The output
is OpenAI's Response object, or its streaming events in OpenAI's order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import ValidationError

from tunelab import limits
from tunelab.errors import InvalidRequest, NotFound
from tunelab.ids import new_id
from tunelab.inference.params import SamplingRequest
from tunelab.inference.service import ChatStream, Choice, InferenceService, Submitted
from tunelab.protocol.responses import (
    CreateResponse,
    FileCitation,
    FileSearchCall,
    FileSearchResult,
    FileSearchTool,
    IncompleteDetails,
    OutputMessage,
    OutputText,
    Response,
    Usage,
)
from tunelab.protocol.vector_stores import RankingOptions
from tunelab.responses.store import ResponseStore, input_items
from tunelab.retrieval.grounding import Passage, build_grounded_messages, find_citations
from tunelab.retrieval.search import Hit, Searcher

INCLUDE_RESULTS = "file_search_call.results"
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


@dataclass
class Prepared:
    """Everything decided before generation starts."""

    messages: list[dict[str, str]]
    tool: FileSearchTool | None = None
    queries: list[str] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)


def _text_of(content: object, where: str) -> str:
    if isinstance(content, str):
        return limits.text(content, where)
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else None for p in content]
        texts = [p for p in parts if isinstance(p, str)]
        if len(texts) == len(parts):
            return limits.text("".join(texts), where)
    raise InvalidRequest(f"'{where}' must be a string or a list of text parts.", param=where)


def parse_input(value: str | list[dict[str, object]]) -> list[dict[str, str]]:
    """The input as chat messages (roles user/assistant/system)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages = []
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"input[{n}] must be an object.", param=f"input[{n}]")
        role_given = item.get("role", "")
        role = _ROLES.get(role_given) if isinstance(role_given, str) else None
        if role is None or item.get("type", "message") != "message":
            raise InvalidRequest(
                f"input[{n}] must be a message with role user, assistant, system or developer.",
                param=f"input[{n}]",
            )
        messages.append(
            {"role": role, "content": _text_of(item.get("content"), f"input[{n}].content")}
        )
    if not messages or messages[-1]["role"] != "user":
        raise InvalidRequest("The input must end with a user message.", param="input")
    return messages


def parse_tools(tools: list[dict[str, object]]) -> FileSearchTool | None:
    found = None
    for n, tool in enumerate(tools):
        if tool.get("type") != "file_search":
            raise InvalidRequest(
                f"Tool type {tool.get('type')!r} is not supported; tunelab serves 'file_search'.",
                param=f"tools[{n}].type",
            )
        if found is not None:
            raise InvalidRequest("Pass at most one file_search tool.", param=f"tools[{n}]")
        try:
            found = FileSearchTool.model_validate(tool)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
            raise InvalidRequest(
                f"Invalid value for 'tools[{n}]{where}': {first['msg']}.",
                param=f"tools[{n}]{where}",
            ) from None
    return found


# Request fields that change nothing here, whatever their value (or whose default
# is all tunelab does); every other unknown field is refused by name.
_HARMLESS = {
    "user",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "parallel_tool_calls",
}
_DEFAULTS: dict[str, tuple[object, ...]] = {  # fields accepted only with these values
    "tool_choice": ("auto", None),
    "truncation": ("disabled", None),
    "background": (False, None),
    "conversation": (None,),
    "reasoning": (None,),
    "prompt": (None,),
}


def refuse_unsupported(req: CreateResponse) -> None:
    """400 naming the first request field tunelab would otherwise ignore."""
    for name, value in (req.model_extra or {}).items():
        if name in _HARMLESS:
            continue
        if name == "text":
            fmt = value.get("format") if isinstance(value, dict) else None
            kind = fmt.get("type", "text") if isinstance(fmt, dict) else "text"
            if kind != "text":
                raise InvalidRequest(
                    f"text.format type {kind!r} is not supported yet; only 'text' is.",
                    param="text.format",
                )
            continue
        if name in _DEFAULTS and value in _DEFAULTS[name]:
            continue
        raise InvalidRequest(
            f"'{name}' is not supported by tunelab's Responses API yet; remove it.", param=name
        )


def prepare(
    searcher: Searcher,
    project: str,
    req: CreateResponse,
    history: list[dict[str, str]] | None = None,
) -> Prepared:
    """Parse the request, run file_search when asked, and lay out the prompt.

    `history` is the conversation of `previous_response_id` (from the response
    store); without a store to read it from, the field is refused."""
    refuse_unsupported(req)
    if req.previous_response_id is not None and history is None:
        raise InvalidRequest(
            "previous_response_id needs stored responses, which this server does not keep.",
            param="previous_response_id",
        )
    messages = (history or []) + parse_input(req.input)
    tool = parse_tools(req.tools)
    if tool is None:
        system = [{"role": "system", "content": req.instructions}] if req.instructions else []
        return Prepared(system + messages)
    question = messages[-1]["content"]
    ranking = tool.ranking_options or RankingOptions()
    hits = searcher.search_stores(
        project,
        tool.vector_store_ids,
        [question],
        max_results=tool.max_num_results,
        filters=tool.filters,
        ranker=ranking.ranker,
        score_threshold=ranking.score_threshold,
    )
    passages = [Passage(h.file_id, h.filename, h.text) for h in hits]
    grounded = build_grounded_messages(question, passages, req.instructions)
    # Earlier turns of a conversation sit between the instructions and the question.
    history = [m for m in messages[:-1] if m["role"] != "system"]
    return Prepared(grounded[:1] + history + grounded[1:], tool, [question], hits)


@dataclass(frozen=True)
class Started:
    """A response whose generation is queued."""

    prepared: Prepared
    submitted: Submitted


def file_search_item(p: Prepared, include: list[str]) -> FileSearchCall:
    results = None
    if INCLUDE_RESULTS in include:
        results = [
            FileSearchResult(
                file_id=h.file_id,
                filename=h.filename,
                score=round(h.score, 6),
                text=h.text,
                attributes=h.attributes,
            )
            for h in p.hits
        ]
    return FileSearchCall(id=new_id("fs_"), queries=p.queries, results=results)


def annotate(text: str, p: Prepared) -> list[FileCitation]:
    if p.tool is None:
        return []
    return [
        FileCitation(
            file_id=p.hits[c.passage].file_id, filename=p.hits[c.passage].filename, index=c.index
        )
        for c in find_citations(text, len(p.hits))
    ]


def build_response(
    req: CreateResponse,
    p: Prepared,
    *,
    response_id: str,
    text: str,
    finish_reason: str,
    usage: Usage | None,
    search_call: FileSearchCall | None = None,
    message_id: str | None = None,
) -> Response:
    output: list[FileSearchCall | OutputMessage] = []
    if p.tool is not None:
        output.append(search_call or file_search_item(p, req.include))
    incomplete = finish_reason == "length"
    output.append(
        OutputMessage(
            id=message_id or new_id("msg_"),
            status="incomplete" if incomplete else "completed",
            content=[OutputText(text=text, annotations=annotate(text, p))],
        )
    )
    return Response(
        id=response_id,
        created_at=int(time.time()),
        status="incomplete" if incomplete else "completed",
        model=req.model,
        output=output,
        output_text=text,
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        tools=req.tools,
        incomplete_details=IncompleteDetails() if incomplete else None,
        metadata=req.metadata or {},
        usage=usage,
        previous_response_id=req.previous_response_id,
        store=req.store,
    )


def stream_events(
    stream: ChatStream, req: CreateResponse, p: Prepared
) -> Iterator[dict[str, object]]:
    """Responses streaming events, in OpenAI's order, ending with response.completed.

    `stream` iterates text deltas and then holds `.result`; it is closed if the
    client goes away.
    """
    response_id, message_id = new_id("resp_"), new_id("msg_")
    search_call = file_search_item(p, req.include) if p.tool is not None else None
    seq = iter(range(1 << 30))

    def event(type_: str, **fields: object) -> dict[str, object]:
        return {"type": type_, "sequence_number": next(seq), **fields}

    def response(text: str, finish_reason: str, usage: Usage | None) -> Response:
        return build_response(
            req,
            p,
            response_id=response_id,
            text=text,
            finish_reason=finish_reason,
            usage=usage,
            search_call=search_call,
            message_id=message_id,
        )

    shell = response("", "stop", None).model_dump()
    shell.update(status="in_progress", output=[], output_text="")
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    index = 0
    if search_call is not None:
        item = search_call.model_dump()
        started = {**item, "status": "in_progress", "queries": [], "results": None}
        yield event("response.output_item.added", output_index=0, item=started)
        for stage in ("in_progress", "searching", "completed"):
            yield event(f"response.file_search_call.{stage}", output_index=0, item_id=item["id"])
        yield event("response.output_item.done", output_index=0, item=item)
        index = 1
    empty = OutputMessage(id=message_id, status="in_progress", content=[]).model_dump()
    yield event("response.output_item.added", output_index=index, item=empty)
    where = {"item_id": message_id, "output_index": index, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", **where, part=part)
    pieces = []
    try:
        for delta in stream:
            pieces.append(delta)
            yield event("response.output_text.delta", **where, delta=delta, logprobs=[])
    finally:
        stream.close()
    text, result = "".join(pieces), stream.result
    assert result is not None  # set when the iteration ended
    final = response(
        text, result.finish_reason, _usage(result.prompt_tokens, result.completion_tokens)
    )
    message = final.output[-1].model_dump()
    for i, annotation in enumerate(message["content"][0].get("annotations") or []):
        yield event(
            "response.output_text.annotation.added",
            **where,
            annotation_index=i,
            annotation=annotation,
        )
    yield event("response.output_text.done", **where, text=text, logprobs=[])
    yield event("response.content_part.done", **where, part=message["content"][0])
    yield event("response.output_item.done", output_index=index, item=message)
    done = "response.incomplete" if final.status == "incomplete" else "response.completed"
    yield event(done, response=final.model_dump())


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def _sampling(req: CreateResponse) -> SamplingRequest:
    return SamplingRequest(
        max_tokens=req.max_output_tokens,
        max_tokens_param="max_output_tokens",
        temperature=req.temperature,
        top_p=req.top_p,
    )


class ResponsesService:
    """Answers, and (with `store`, the default) keeps them for retrieval and for
    continuing the conversation with `previous_response_id`."""

    def __init__(
        self, inference: InferenceService, searcher: Searcher, store: ResponseStore | None = None
    ) -> None:
        self.inference = inference
        self.searcher = searcher
        self.store = store

    def _prepare(self, project: str, req: CreateResponse) -> Prepared:
        history = None
        if req.previous_response_id is not None and self.store is not None:
            history = self.store.history(project, req.previous_response_id)
        return prepare(self.searcher, project, req, history)

    def _keep(self, project: str, req: CreateResponse, body: dict[str, object]) -> None:
        if req.store and self.store is not None:
            self.store.save(project, body, input_items(req.input), req.previous_response_id)

    def start(self, project: str, req: CreateResponse) -> Started:
        """Search, lay out the prompt and queue the generation (400/404/503 here)."""
        p = self._prepare(project, req)
        sub = self.inference.start_chat(project, req.model, p.messages, _sampling(req))
        return Started(p, sub)

    def finish(
        self, project: str, req: CreateResponse, started: Started, choice: Choice
    ) -> Response:
        """The Response for a generation that `start` queued (stored if asked)."""
        response = build_response(
            req,
            started.prepared,
            response_id=new_id("resp_"),
            text=choice.text,
            finish_reason=choice.finish_reason or "stop",
            usage=_usage(started.submitted.prompt_tokens, choice.completion_tokens),
        )
        self._keep(project, req, response.model_dump())
        return response

    def create(self, project: str, req: CreateResponse) -> Response:
        """Answer in one piece (blocking; the route awaits `start`'s generation itself,
        so that a client that leaves cancels it)."""
        started = self.start(project, req)
        return self.finish(project, req, started, started.submitted.collect()[0])

    def stream(self, project: str, req: CreateResponse) -> Iterator[dict[str, object]]:
        """Streaming events. Generation is queued before this returns, so a bad model
        or parameter is an HTTP error, not a broken stream."""
        p = self._prepare(project, req)
        chat = self.inference.stream_chat(project, req.model, p.messages, _sampling(req))
        return self._kept(project, req, stream_events(chat, req, p))

    def _kept(
        self, project: str, req: CreateResponse, events: Iterator[dict[str, object]]
    ) -> Iterator[dict[str, object]]:
        """The events, storing the final response once it has been sent."""
        for event in events:
            yield event
            if event["type"] in ("response.completed", "response.incomplete"):
                final = event["response"]
                assert isinstance(final, dict)
                self._keep(project, req, final)

    def get(self, project: str, response_id: str) -> dict[str, object]:
        return self._store().get(project, response_id)

    def delete(self, project: str, response_id: str) -> None:
        self._store().delete(project, response_id)

    def input_items(
        self, project: str, response_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[dict[str, object]], bool]:
        return self._store().list_input_items(
            project, response_id, after=after, limit=limit, order=order
        )

    def _store(self) -> ResponseStore:
        if self.store is None:
            raise NotFound("This server keeps no responses.", param="response_id")
        return self.store
