"""Responses in a batch: the batch worker's executor for `/v1/responses` lines.

Each line is answered by the Responses service exactly as `POST /v1/responses`
would answer it (stored too, unless the line says `"store": false`). Lines run
one after another: a Responses answer may search vector stores first, so there
is no shared forward pass to batch them into.
"""

from __future__ import annotations

from pydantic import ValidationError

from tunelab.batches.executors import Outcome, error_outcome, invalid_body
from tunelab.errors import TunelabError
from tunelab.protocol.responses import CreateResponse
from tunelab.responses.service import ResponsesService

ENDPOINT = "/v1/responses"


class ResponsesExecutor:
    def __init__(self, responses: ResponsesService, chunk_size: int = 4) -> None:
        self.responses = responses
        self.chunk_size = chunk_size

    def run(self, project: str, bodies: list[dict[str, object]]) -> list[Outcome]:
        return [self._one(project, body) for body in bodies]

    def _one(self, project: str, body: dict[str, object]) -> Outcome:
        try:
            req = CreateResponse.model_validate(body)
            return Outcome(200, self.responses.create(project, req).model_dump())
        except ValidationError as e:
            return error_outcome(invalid_body(e))
        except TunelabError as e:
            return error_outcome(e)
