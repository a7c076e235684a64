"""How a batch runs its lines: one executor per endpoint.

An executor takes a chunk of request bodies and answers each with the status
code and body the endpoint would have sent. The embeddings executor prepares
every line like the route does, then embeds the whole chunk's texts in one call
to the batching engine (a batch runs at the engine's batch speed, not one
request at a time) and answers each line with the route's own `respond`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from tunelab.db.base import now
from tunelab.embeddings import endpoint
from tunelab.embeddings.protocol import Embedder
from tunelab.errors import InvalidRequest, TunelabError
from tunelab.ids import new_id
from tunelab.inference import openai_requests as req
from tunelab.inference.chat_output import chat_plan
from tunelab.inference.service import InferenceService, Submitted
from tunelab.models.registry import Registry
from tunelab.protocol import chat as c
from tunelab.protocol import completions as tc
from tunelab.protocol.embeddings import EmbeddingRequest

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]


class Executor(Protocol):
    # How many lines the worker hands over at once (results are saved per chunk).
    chunk_size: int

    def run(self, project: str, bodies: list[dict[str, Any]]) -> list[Outcome]: ...


def error_outcome(e: TunelabError) -> Outcome:
    return Outcome(e.status_code, e.to_dict())


def invalid_body(e: ValidationError) -> TunelabError:
    first = e.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or None
    return InvalidRequest(f"{where}: {first['msg']}" if where else first["msg"], param=where)


class EmbeddingsExecutor:
    def __init__(self, registry: Registry, embeddings: Embedder, chunk_size: int = 256):
        self.registry = registry
        self.embeddings = embeddings
        self.chunk_size = chunk_size

    def run(self, project: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(bodies)
        prepared: list[tuple[int, endpoint.Prepared]] = []
        for i, body in enumerate(bodies):
            try:
                req = EmbeddingRequest.model_validate(body)
                prepared.append(
                    (i, endpoint.prepare(req, self.registry, self.embeddings, count=True))
                )
            except ValidationError as e:
                outcomes[i] = error_outcome(invalid_body(e))
            except TunelabError as e:
                outcomes[i] = error_outcome(e)
        by_model: dict[str, list[tuple[int, endpoint.Prepared]]] = {}
        for i, p in prepared:
            by_model.setdefault(p.request.model, []).append((i, p))
        for model, group in by_model.items():
            texts = [t for _, p in group for t in p.texts]
            vecs = self.embeddings.embed(model, texts)
            start = 0
            for i, p in group:
                rows = vecs[start : start + len(p.texts)]
                start += len(p.texts)
                outcomes[i] = Outcome(200, endpoint.respond(p, rows))
        return [o for o in outcomes if o is not None]


class ChatExecutor:
    """Chat and legacy completions: a chunk's lines are queued together, so the
    engine decodes them as one batch, and kept few so interactive requests still
    find room in the decoder."""

    def __init__(self, inference: InferenceService, endpoint: str, chunk_size: int = 8) -> None:
        self.inference = inference
        self.endpoint = endpoint
        self.chunk_size = chunk_size

    def _start(self, project: str, body: dict[str, Any]) -> Callable[[], Outcome]:
        """Queue one line; returns how to wait for its answer."""
        cid, created = new_id("chatcmpl-" if self.endpoint == CHAT else "cmpl-"), now()
        if self.endpoint == CHAT:
            chat = c.ChatCompletionRequest.model_validate(body)
            sampling, plan = req.chat_sampling(chat), chat_plan(chat)
            sub = self.inference.start_chat(project, chat.model, chat.messages, sampling, plan)
            return lambda: Outcome(
                200, req.chat_completion(chat, sub, sub.collect(), cid, created).model_dump()
            )
        text = tc.CompletionRequest.model_validate(body)
        sampling = req.completion_sampling(text)
        subs: list[Submitted] = []
        try:
            for p in req.prompts(text.prompt):
                subs.append(self.inference.start_completion(project, text.model, p, sampling))
        except TunelabError:
            for s in subs:
                s.cancel()
            raise
        echoes = [s.tokenizer.decode(s.prompt_ids) if text.echo else "" for s in subs]
        return lambda: Outcome(
            200,
            req.completion(
                text, subs, [s.collect() for s in subs], echoes, cid, created
            ).model_dump(),
        )

    def run(self, project: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
        started: list[Callable[[], Outcome] | Outcome] = []
        for body in bodies:  # queue every line first: they decode together
            try:
                started.append(self._start(project, body))
            except ValidationError as e:
                started.append(error_outcome(invalid_body(e)))
            except TunelabError as e:
                started.append(error_outcome(e))
        return [s if isinstance(s, Outcome) else _wait(s) for s in started]


def _wait(answer: Callable[[], Outcome]) -> Outcome:
    try:
        return answer()
    except TunelabError as e:
        return error_outcome(e)
