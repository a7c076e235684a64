"""`POST /v1/responses`: retrieve, prompt, generate, cite, call.

A request is parsed (`responses.items`) and, with a `file_search` tool, grounded
in the vector stores' best passages (the prompt layout is `retrieval.grounding`,
shared with `tunelab ground-data` so training prompts match served ones);
function tools and `text.format` become the answer's grammar
(`inference.output_plan`); generation goes through the inference service,
whichever chat engine sits below it. The output is OpenAI's Response object
(a message, or function_call items), or its streaming events in OpenAI's order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tunelab.errors import InvalidRequest, NotFound, TunelabError
from tunelab.ids import new_id
from tunelab.inference.handle import Failed, Finished
from tunelab.inference.output_plan import FREE_TEXT, OutputPlan, output_plan, responses_text_format
from tunelab.inference.params import SamplingRequest
from tunelab.inference.service import Choice, InferenceService, Submitted
from tunelab.inference.tool_calls import CallArguments, CallOpened, Content
from tunelab.protocol.responses import (
    CreateResponse,
    FileCitation,
    FileSearchCall,
    FileSearchResult,
    FileSearchTool,
    FunctionCall,
    IncompleteDetails,
    OutputMessage,
    OutputText,
    Response,
    Usage,
)
from tunelab.protocol.vector_stores import RankingOptions
from tunelab.responses.items import parse_input, parse_tools
from tunelab.responses.store import ResponseStore, input_items
from tunelab.retrieval.grounding import Passage, build_grounded_messages, find_citations
from tunelab.retrieval.search import Hit, Searcher

INCLUDE_RESULTS = "file_search_call.results"


@dataclass
class Prepared:
    """Everything decided before generation starts."""

    messages: list[dict[str, object]]
    plan: OutputPlan = FREE_TEXT
    tool: FileSearchTool | None = None
    queries: list[str] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)


# Request fields that change nothing here, whatever their value (or whose default
# is all tunelab does); every other unknown field is refused by name.
_HARMLESS = {"user", "service_tier", "prompt_cache_key", "safety_identifier"}
_DEFAULTS: dict[str, tuple[object, ...]] = {  # fields accepted only with these values
    "truncation": ("disabled", None),
    "background": (False, None),
    "conversation": (None,),
    "reasoning": (None,),
    "prompt": (None,),
}


def refuse_unsupported(req: CreateResponse) -> None:
    """400 naming the first request field tunelab would otherwise ignore."""
    for name, value in (req.model_extra or {}).items():
        if name in _HARMLESS or (name in _DEFAULTS and value in _DEFAULTS[name]):
            continue
        raise InvalidRequest(
            f"'{name}' is not supported by tunelab's Responses API yet; remove it.", param=name
        )


def prepare(
    searcher: Searcher,
    project: str,
    req: CreateResponse,
    history: list[dict[str, object]] | None = None,
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
    messages = [*(history or []), *parse_input(req.input)]
    tools = parse_tools(req)
    schema = responses_text_format(req.text, messages)
    plan = output_plan(tools=tools.functions, schema=schema, param="text.format.schema")
    tool = tools.file_search
    question = messages[-1]["content"]
    if tool is None or not isinstance(question, str) or messages[-1]["role"] != "user":
        system: list[dict[str, object]] = (
            [{"role": "system", "content": req.instructions}] if req.instructions else []
        )
        return Prepared([*system, *messages], plan)
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
    grounded: list[dict[str, object]] = [
        dict(m) for m in build_grounded_messages(question, passages, req.instructions)
    ]
    # Earlier turns of a conversation sit between the instructions and the question.
    history = [m for m in messages[:-1] if m["role"] != "system"]
    return Prepared([grounded[0], *history, *grounded[1:]], plan, tool, [question], hits)


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


def call_items(calls: list[tuple[str, str, str]], status: str) -> list[FunctionCall]:
    return [
        FunctionCall(id=new_id("fc_"), call_id=cid, name=name, arguments=args, status=status)  # type: ignore[arg-type]
        for cid, name, args in calls
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
    calls: list[FunctionCall] | None = None,
) -> Response:
    """The Response object; `calls` (function_call items) replace the message."""
    output: list[FileSearchCall | FunctionCall | OutputMessage] = []
    if p.tool is not None:
        output.append(search_call or file_search_item(p, req.include))
    incomplete = finish_reason == "length"
    if calls:
        output.extend(calls)
        text = ""
    else:
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
        tool_choice=req.tool_choice or "auto",
        parallel_tool_calls=req.parallel_tool_calls is not False,
        text=req.text or {"format": {"type": "text"}},
        incomplete_details=IncompleteDetails() if incomplete else None,
        metadata=req.metadata or {},
        usage=usage,
        previous_response_id=req.previous_response_id,
        store=req.store,
    )


def stream_events(sub: Submitted, req: CreateResponse, p: Prepared) -> Iterator[dict[str, object]]:
    """Responses streaming events, in OpenAI's order, ending with response.completed.

    Text streams as a message item; calls stream as function_call items
    (`response.function_call_arguments.delta` pieces). Generation stops if the
    client goes away (the iterator is closed)."""
    response_id, message_id = new_id("resp_"), new_id("msg_")
    search_call = file_search_item(p, req.include) if p.tool is not None else None
    seq = iter(range(1 << 30))
    parser = p.plan.parser()
    items: list[FunctionCall] = []
    pieces: list[str] = []
    index = 0
    message_open = False

    def event(type_: str, **fields: object) -> dict[str, object]:
        return {"type": type_, "sequence_number": next(seq), **fields}

    def response(text: str, reason: str, usage: Usage | None) -> Response:
        return build_response(
            req, p, response_id=response_id, text=text, finish_reason=reason, usage=usage,
            search_call=search_call, message_id=message_id, calls=items or None,
        )  # fmt: skip

    def where() -> dict[str, object]:
        return {"item_id": message_id, "output_index": index, "content_index": 0}

    def open_message() -> Iterator[dict[str, object]]:
        empty = OutputMessage(id=message_id, status="in_progress", content=[]).model_dump()
        yield event("response.output_item.added", output_index=index, item=empty)
        part = {"type": "output_text", "text": "", "annotations": []}
        yield event("response.content_part.added", **where(), part=part)

    def close_call() -> Iterator[dict[str, object]]:
        call = items[-1]
        call.status = "completed"
        out = {"item_id": call.id, "output_index": index}
        yield event("response.function_call_arguments.done", **out, arguments=call.arguments)
        yield event("response.output_item.done", output_index=index, item=call.model_dump())

    shell = response("", "stop", None).model_dump()
    shell.update(status="in_progress", output=[], output_text="")
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    if search_call is not None:
        item = search_call.model_dump()
        started = {**item, "status": "in_progress", "queries": [], "results": None}
        yield event("response.output_item.added", output_index=0, item=started)
        for stage in ("in_progress", "searching", "completed"):
            yield event(f"response.file_search_call.{stage}", output_index=0, item_id=item["id"])
        yield event("response.output_item.done", output_index=0, item=item)
        index = 1
    reason, completion_tokens = "stop", 0
    try:
        for ev in sub.generation.events():
            if isinstance(ev, Failed):
                raise (
                    ev.error if isinstance(ev.error, TunelabError) else TunelabError(str(ev.error))
                )
            if isinstance(ev, Finished):
                reason, completion_tokens = ev.finish_reason, ev.completion_tokens
                outputs = parser.finish()
            else:
                outputs = parser.feed(ev.text)
                if parser.repeated:
                    sub.generation.stop_choice(0)
            for out in outputs:
                if isinstance(out, Content):
                    if not message_open:
                        message_open = True
                        yield from open_message()
                    pieces.append(out.text)
                    yield event(
                        "response.output_text.delta", **where(), delta=out.text, logprobs=[]
                    )
                elif isinstance(out, CallOpened):
                    if items:
                        yield from close_call()
                        index += 1
                    items.append(
                        FunctionCall(
                            id=new_id("fc_"),
                            call_id=out.id,
                            name=out.name,
                            arguments="",
                            status="in_progress",
                        )
                    )
                    yield event(
                        "response.output_item.added",
                        output_index=index,
                        item=items[-1].model_dump(),
                    )
                elif isinstance(out, CallArguments):
                    items[-1].arguments += out.text
                    yield event(
                        "response.function_call_arguments.delta",
                        item_id=items[-1].id, output_index=index, delta=out.text,
                    )  # fmt: skip
    finally:
        sub.cancel()  # no-op when finished; stops generating when the client left
    usage = _usage(sub.prompt_tokens, completion_tokens)
    if items:
        yield from close_call()
        final = response("", reason, usage)
    else:
        if not message_open:
            yield from open_message()
        text = "".join(pieces)
        final = response(text, reason, usage)
        message = final.output[-1].model_dump()
        for i, annotation in enumerate(message["content"][0].get("annotations") or []):
            yield event(
                "response.output_text.annotation.added",
                **where(),
                annotation_index=i,
                annotation=annotation,
            )
        yield event("response.output_text.done", **where(), text=text, logprobs=[])
        yield event("response.content_part.done", **where(), part=message["content"][0])
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

    def _keep(self, project: str, req: CreateResponse, body: dict[str, object]) -> None:
        if req.store and self.store is not None:
            self.store.save(project, body, input_items(req.input), req.previous_response_id)

    def start(self, project: str, req: CreateResponse) -> Started:
        """Search, lay out the prompt and queue the generation (400/404/503 here)."""
        history = None
        if req.previous_response_id is not None and self.store is not None:
            history = self.store.history(project, req.previous_response_id)
        p = prepare(self.searcher, project, req, history)
        sub = self.inference.start_chat(project, req.model, p.messages, _sampling(req), p.plan)
        return Started(p, sub)

    def finish(
        self, project: str, req: CreateResponse, started: Started, choice: Choice
    ) -> Response:
        """The Response for a generation that `start` queued (stored if asked)."""
        out = choice.output()
        reason = choice.finish_reason or "stop"
        response = build_response(
            req,
            started.prepared,
            response_id=new_id("resp_"),
            text=out.content or "",
            finish_reason=reason,
            usage=_usage(started.submitted.prompt_tokens, choice.completion_tokens),
            calls=call_items(out.calls, "incomplete" if reason == "length" else "completed"),
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
        started = self.start(project, req)
        return self._kept(project, req, stream_events(started.submitted, req, started.prepared))

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
