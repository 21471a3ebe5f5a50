"""Typed errors for everything LM Studio can answer, and the parser for its odd error bodies.

LM Studio's `error` is a string in some builds and an object in others, and an unknown path is a
*200* whose body is only `error`. `error_from_body` turns all of them into one of these classes.
"""

from __future__ import annotations

from typing import Any


class LMStudioError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class LMStudioUnavailable(LMStudioError):
    """Nothing answers at the base URL (refused, reset, DNS)."""


class LMStudioTimeout(LMStudioError):
    """A timeout; `phase` says which: connect, first_token, idle, total (generation), models (model
    list or info), load (loading or unloading a model)."""

    def __init__(self, message: str, *, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class NotLMStudio(LMStudioError):
    """Something answers, but not LM Studio's API at this base URL (e.g. a base URL ending in /v1)."""


class ModelNotFound(LMStudioError):
    """The model asked for is not known to LM Studio."""


class NoModelLoaded(LMStudioError):
    """LM Studio has no model loaded to answer with."""


class ContextLengthExceeded(LMStudioError):
    """The prompt does not fit the model's loaded context length."""


class ModelCrashed(LMStudioError):
    """The model process crashed while answering."""


class BadRequest(LMStudioError):
    """LM Studio refused the request as malformed or unauthorized."""


class UnsupportedByServer(LMStudioError):
    """The server is LM Studio but too old for this call (load/unload need 0.4+)."""


class UpstreamError(LMStudioError):
    """Any other failure reported by LM Studio."""


class StreamInterrupted(UpstreamError):
    """The connection broke after streaming had begun."""


UNEXPECTED_ENDPOINT = "Unexpected endpoint or method"


def error_message(body: Any) -> str | None:
    """The error text of a body, whether `error` is a string or an object; None if no error."""
    if not isinstance(body, dict) or "error" not in body:
        return None
    error = body["error"]
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)
    return str(error)


def error_from_body(status: int, body: Any) -> LMStudioError:
    """Classify an LM Studio error body (any of its shapes) into a typed exception."""
    message = error_message(body) or (str(body)[:300] if body else f"HTTP {status}")
    code = (
        body["error"].get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    )
    lowered = message.lower()
    kwargs: dict[str, Any] = {"status": status, "body": body}
    if UNEXPECTED_ENDPOINT.lower() in lowered:
        return NotLMStudio(message, **kwargs)
    if "no models loaded" in lowered or "no model loaded" in lowered:
        return NoModelLoaded(message, **kwargs)
    if (
        code == "model_not_found"
        or "invalid model identifier" in lowered
        or ("model" in lowered and "not found" in lowered)
    ):
        return ModelNotFound(message, **kwargs)
    if "context length" in lowered or "context overflow" in lowered or "context the overflows" in lowered:
        return ContextLengthExceeded(message, **kwargs)
    if "crashed" in lowered:
        return ModelCrashed(message, **kwargs)
    if status == 404:
        return ModelNotFound(message, **kwargs) if "model" in lowered else NotLMStudio(message, **kwargs)
    if 400 <= status < 500 or status == 200:
        return BadRequest(message, **kwargs)
    return UpstreamError(message, **kwargs)
