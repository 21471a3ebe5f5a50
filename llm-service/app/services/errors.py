"""LM Studio's failures, as the fleet's HTTP errors (status and code).

A response body never names LM Studio's base URL or repeats transport error text: the details go to
the log line, which carries the request id.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from chat_common.errors import (
    AppError,
    BadGatewayError,
    BadRequestError,
    GatewayTimeoutError,
    NotFoundError,
    ServiceUnavailableError,
    UnprocessableError,
)
from lmstudio_client import (
    BadRequest,
    ContextLengthExceeded,
    LMStudioError,
    LMStudioTimeout,
    LMStudioUnavailable,
    ModelCrashed,
    ModelNotFound,
    NoModelLoaded,
    NotLMStudio,
    UnsupportedByServer,
)

logger = logging.getLogger(__name__)

NO_MODEL_HINT = (
    "Load a model in LM Studio (Developer tab, or `lms load <model>`), or POST /api/v1/models/{id}/load"
)
LMSTUDIO = {"service": "lmstudio"}


def redact(text: str, base_url: str) -> str:
    """`text` without LM Studio's base URL or its host:port."""
    parts = urlsplit(base_url)
    for secret in (base_url.rstrip("/"), parts.netloc, parts.hostname or ""):
        if secret:
            text = text.replace(secret, "LM Studio")
    return text


def upstream_error(exc: LMStudioError, base_url: str) -> AppError:
    """Map a typed LM Studio error to the status and code the fleet promises; log what happened."""
    logger.warning("LM Studio at %s failed: %s: %s", base_url, type(exc).__name__, exc.message)
    error = _mapped(exc)
    error.message = redact(error.message, base_url)
    return error


def _mapped(exc: LMStudioError) -> AppError:
    if isinstance(exc, LMStudioUnavailable):
        return ServiceUnavailableError(
            "LM Studio is unreachable", code="llm_unavailable", details=LMSTUDIO, headers={"Retry-After": "5"}
        )
    if isinstance(exc, NoModelLoaded):
        return ServiceUnavailableError(
            "LM Studio has no model loaded", code="no_model_loaded", details={"hint": NO_MODEL_HINT}
        )
    if isinstance(exc, ModelNotFound):
        return NotFoundError(exc.message, code="model_not_found")
    if isinstance(exc, ContextLengthExceeded):
        return UnprocessableError(exc.message, code="context_length_exceeded")
    if isinstance(exc, ModelCrashed):
        return BadGatewayError(exc.message, code="model_crashed", details=LMSTUDIO)
    if isinstance(exc, LMStudioTimeout):
        return GatewayTimeoutError(
            f"LM Studio timed out ({exc.phase})", code="llm_timeout", details={**LMSTUDIO, "phase": exc.phase}
        )
    if isinstance(exc, UnsupportedByServer):
        return BadGatewayError(exc.message, code="unsupported_by_lmstudio", details=LMSTUDIO)
    if isinstance(exc, NotLMStudio):
        return BadGatewayError(
            "The configured LM Studio base URL does not answer like LM Studio; check LMSTUDIO_BASE_URL",
            code="llm_misconfigured",
            details=LMSTUDIO,
        )
    if isinstance(exc, BadRequest):
        return BadRequestError(exc.message, code="bad_request", details=LMSTUDIO)
    return BadGatewayError("LM Studio failed while answering", code="llm_error", details=LMSTUDIO)
