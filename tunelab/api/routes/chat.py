"""POST /v1/chat/completions and POST /v1/completions, streaming or not.

Handlers parse, queue the request with the InferenceService (a 400/404/503 is
raised before any byte of the response is sent), then either wait for the
choices or stream them as server-sent events: `data: {json}\\n\\n` per chunk and
`data: [DONE]\\n\\n` at the end. A client that goes away cancels its generation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tunelab.api.deps import InferenceDep, ProjectDep
from tunelab.api.disconnect import ClientGone, unless_disconnected
from tunelab.api.jsonbody import ApiRoute
from tunelab.errors import TunelabError
from tunelab.ids import new_id
from tunelab.inference import openai_format as fmt
from tunelab.inference import openai_requests as req
from tunelab.inference.chat_output import ChoiceStream, chat_plan
from tunelab.inference.handle import Delta, Failed, Finished, TokenLogprob
from tunelab.inference.service import Submitted
from tunelab.protocol import chat as c
from tunelab.protocol import completions as tc

router = APIRouter(route_class=ApiRoute)


class _EventStream(StreamingResponse):
    """Closes the chunk generator however the response ends, so a client that
    disconnects mid-stream runs its `finally` (which cancels the generation) now,
    not whenever the abandoned generator is garbage-collected."""

    def __init__(self, body: AsyncGenerator[str, None]) -> None:
        super().__init__(
            body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
        self._body = body

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self._body.aclose()


def _sse(chunks: AsyncGenerator[BaseModel, None], include_usage: bool) -> StreamingResponse:
    # As OpenAI's: chunks carry `"usage": null` only when usage was asked for.
    exclude = None if include_usage else {"usage"}

    async def body() -> AsyncGenerator[str, None]:
        try:
            async for chunk in chunks:
                yield f"data: {chunk.model_dump_json(exclude=exclude)}\n\n"
        except TunelabError as e:  # the SDK raises APIError for a data line with "error"
            yield f"data: {json.dumps(e.to_dict())}\n\n"
            return
        finally:
            await chunks.aclose()
        yield "data: [DONE]\n\n"

    return _EventStream(body())


# -- chat ---------------------------------------------------------------------------


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(
    body: c.ChatCompletionRequest, request: Request, inference: InferenceDep, project: ProjectDep
) -> c.ChatCompletion | Response:
    sampling = req.chat_sampling(body)
    plan = await run_in_threadpool(chat_plan, body)
    sub = await run_in_threadpool(
        inference.start_chat, project, body.model, body.messages, sampling, plan
    )
    cid, created = new_id("chatcmpl-"), int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_chat_chunks(sub, cid, created, include_usage), include_usage)
    try:
        choices = await unless_disconnected(request, sub.acollect(), [sub])
    except ClientGone:
        return Response(status_code=499)  # nobody is listening; nginx's "client closed request"
    return req.chat_completion(body, sub, choices, cid, created)


async def _chat_chunks(
    sub: Submitted, cid: str, created: int, include_usage: bool
) -> AsyncGenerator[BaseModel, None]:
    def chunk(choices: list[c.ChunkChoice], usage: c.Usage | None = None) -> c.ChatCompletionChunk:
        return c.ChatCompletionChunk(
            id=cid, created=created, model=sub.model, choices=choices, usage=usage
        )

    streams = [ChoiceStream(sub.plan, i) for i in range(sub.generation.params.n)]

    def choice_chunks(
        s: ChoiceStream, deltas: list[c.ChunkDelta], lps: list[TokenLogprob]
    ) -> Iterator[c.ChatCompletionChunk]:
        s.pending_logprobs.extend(lps)
        for d in deltas:
            logprobs = None
            if s.pending_logprobs:
                logprobs = fmt.chat_logprobs(sub.tokenizer, s.pending_logprobs)
                s.pending_logprobs = []
            yield chunk([c.ChunkChoice(index=s.index, delta=d, logprobs=logprobs)])

    eager = [s for s in streams if s.eager]
    if eager:  # free text: the role chunk goes out before the first token
        for s in eager:
            s.started = True
        yield chunk(
            [
                c.ChunkChoice(index=s.index, delta=c.ChunkDelta(role="assistant", content=""))
                for s in eager
            ]
        )
    completion_tokens = 0
    try:
        async for event in sub.generation.aevents():
            if isinstance(event, Failed):
                raise (
                    event.error
                    if isinstance(event.error, TunelabError)
                    else TunelabError(str(event.error))
                )
            s = streams[event.index]
            if isinstance(event, Delta):
                for ch in choice_chunks(s, s.feed(event.text), event.logprobs):
                    yield ch
                if s.parser.repeated:  # the model repeats a call: end this choice
                    sub.generation.stop_choice(s.index)
            elif isinstance(event, Finished):
                completion_tokens += event.completion_tokens
                for ch in choice_chunks(s, s.finish(), []):
                    yield ch
                yield chunk(
                    [
                        c.ChunkChoice(
                            index=event.index,
                            delta=c.ChunkDelta(),
                            finish_reason=s.finish_reason(event.finish_reason),
                        )
                    ]
                )
    finally:
        sub.cancel()  # no-op when finished; stops generation when the client disconnected
    if include_usage:
        yield chunk([], fmt.usage(sub.prompt_tokens, completion_tokens))


# -- legacy completions -------------------------------------------------------------


@router.post("/completions", response_model=None)
async def create_completion(
    body: tc.CompletionRequest, request: Request, inference: InferenceDep, project: ProjectDep
) -> tc.Completion | Response:
    sampling = req.completion_sampling(body)

    def start_all() -> list[Submitted]:
        subs: list[Submitted] = []
        try:
            for p in req.prompts(body.prompt):
                subs.append(inference.start_completion(project, body.model, p, sampling))
        except TunelabError:
            for s in subs:
                s.cancel()
            raise
        return subs

    subs = await run_in_threadpool(start_all)
    cid, created = new_id("cmpl-"), int(time.time())
    echoes = [s.tokenizer.decode(s.prompt_ids) if body.echo else "" for s in subs]
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(
            _completion_chunks(subs, echoes, cid, created, body.logprobs, include_usage),
            include_usage,
        )
    try:
        per_prompt = await unless_disconnected(
            request, asyncio.gather(*(s.acollect() for s in subs)), subs
        )
    except ClientGone:
        return Response(status_code=499)
    return req.completion(body, subs, per_prompt, echoes, cid, created)


async def _completion_chunks(
    subs: list[Submitted],
    echoes: list[str],
    cid: str,
    created: int,
    logprobs: int | None,
    include_usage: bool,
) -> AsyncGenerator[BaseModel, None]:
    """Events of every prompt's generation, merged as they come."""
    n = subs[0].generation.params.n
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(k: int, sub: Submitted) -> None:
        async for event in sub.generation.aevents():
            await queue.put((k, event))
        await queue.put((k, None))

    def chunk(choices: list[tc.CompletionChoice], usage: c.Usage | None = None) -> tc.Completion:
        return tc.Completion(
            id=cid, created=created, model=subs[0].model, choices=choices, usage=usage
        )

    tasks = [asyncio.create_task(pump(k, s)) for k, s in enumerate(subs)]
    offsets = {(k, i): len(echoes[k]) for k in range(len(subs)) for i in range(n)}
    completion_tokens, running = 0, len(subs)
    try:
        for k, echo in enumerate(echoes):
            if echo:
                yield chunk(
                    [
                        tc.CompletionChoice(index=k * n + i, text=echo, finish_reason=None)
                        for i in range(n)
                    ]
                )
        while running:
            k, event = await queue.get()
            if event is None:
                running -= 1
            elif isinstance(event, Failed):
                raise (
                    event.error
                    if isinstance(event.error, TunelabError)
                    else TunelabError(str(event.error))
                )
            elif isinstance(event, Delta):
                lps = None
                if logprobs is not None:
                    lps = fmt.completion_logprobs(
                        subs[k].tokenizer, event.logprobs, offsets[k, event.index], logprobs
                    )
                offsets[k, event.index] += len(event.text)
                yield chunk(
                    [
                        tc.CompletionChoice(
                            index=k * n + event.index,
                            text=event.text,
                            finish_reason=None,
                            logprobs=lps,
                        )
                    ]
                )
            elif isinstance(event, Finished):
                completion_tokens += event.completion_tokens
                yield chunk(
                    [
                        tc.CompletionChoice(
                            index=k * n + event.index, text="", finish_reason=event.finish_reason
                        )
                    ]
                )
    finally:
        for s in subs:
            s.cancel()
        for t in tasks:
            t.cancel()
    if include_usage:
        yield chunk([], fmt.usage(sum(s.prompt_tokens for s in subs), completion_tokens))
