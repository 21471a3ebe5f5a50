"""LM Studio's failures, as the fleet's HTTP errors (status and code)."""

from __future__ import annotations

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

NO_MODEL_HINT = (
    "Load a model in LM Studio (Developer tab, or `lms load <model>`), or POST /api/v1/models/{id}/load"
)


def upstream_error(exc: LMStudioError, base_url: str) -> AppError:
    """Map a typed LM Studio error to the status and code the fleet promises."""
    if isinstance(exc, LMStudioUnavailable):
        return ServiceUnavailableError(
            f"LM Studio is unreachable at {base_url}",
            code="llm_unavailable",
            details={"service": "lmstudio", "reason": exc.message},
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, NoModelLoaded):
        return ServiceUnavailableError(
            "LM Studio has no model loaded",
            code="no_model_loaded",
            details={"hint": NO_MODEL_HINT},
        )
    if isinstance(exc, ModelNotFound):
        return NotFoundError(exc.message, code="model_not_found")
    if isinstance(exc, ContextLengthExceeded):
        return UnprocessableError(exc.message, code="context_length_exceeded")
    if isinstance(exc, ModelCrashed):
        return BadGatewayError(exc.message, code="model_crashed", details={"service": "lmstudio"})
    if isinstance(exc, LMStudioTimeout):
        return GatewayTimeoutError(
            f"LM Studio timed out ({exc.phase}): {exc.message}",
            code="llm_timeout",
            details={"service": "lmstudio", "phase": exc.phase},
        )
    if isinstance(exc, UnsupportedByServer):
        return BadGatewayError(exc.message, code="unsupported_by_lmstudio", details={"service": "lmstudio"})
    if isinstance(exc, NotLMStudio):
        return BadGatewayError(
            f"{base_url} does not answer like LM Studio; check LMSTUDIO_BASE_URL ({exc.message})",
            code="llm_misconfigured",
            details={"service": "lmstudio"},
        )
    if isinstance(exc, BadRequest):
        return BadRequestError(exc.message, code="bad_request", details={"service": "lmstudio"})
    return BadGatewayError(
        f"LM Studio failed: {exc.message}", code="llm_error", details={"service": "lmstudio"}
    )
