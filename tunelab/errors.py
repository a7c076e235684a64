"""One exception tree for the whole service.

    TunelabError                  500 server_error (never raised for bad input)
    ├── InvalidRequest            400 invalid_request_error (param names the field)
    │   ├── PayloadTooLarge       413 invalid_request_error
    │   └── ModelUnavailable      400 invalid_request_error (model exists but cannot do this)
    ├── Unauthorized              401 invalid_request_error / invalid_api_key
    ├── PermissionDenied          403 invalid_request_error
    ├── NotFound                  404 invalid_request_error
    └── Overloaded                503 server_error, Retry-After (the SDK retries it)

Services raise these; `tunelab.api.errors` turns them into OpenAI's
`{"error": {message, type, param, code}}` once, and the CLI into one clean line.
Messages say what is wrong and what to do next. A permanent error never uses
408/409/429/5xx, because the openai SDK retries those.
"""

from __future__ import annotations


class TunelabError(Exception):
    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def to_dict(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(TunelabError):
    status_code = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status_code = 413


class Unauthorized(TunelabError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDenied(TunelabError):
    status_code = 403
    error_type = "invalid_request_error"


class NotFound(TunelabError):
    status_code = 404
    error_type = "invalid_request_error"


class Overloaded(TunelabError):
    status_code = 503
    error_type = "server_error"
    default_code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelUnavailable(InvalidRequest):
    default_code = "model_not_supported"


def queue_full(model: str, waiting: int) -> Overloaded:
    """A model's bounded request queue is full: 503 with Retry-After, which SDKs retry."""
    return Overloaded(
        f"Too many requests are waiting for model '{model}' ({waiting} queued). Retry shortly.",
        retry_after=1.0,
    )


def model_not_found(model: str) -> NotFound:
    return NotFound(f"The model '{model}' does not exist", param="model", code="model_not_found")
