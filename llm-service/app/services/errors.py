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
    ModelInfo,
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


def missing_model(
    exc: LMStudioError, requested: str, models: list[ModelInfo], *, kind: str | None
) -> AppError:
    """LM Studio refused the model named: 503 `no_model_loaded` when it is downloaded but not loaded (LM
    Studio's JIT loading is off, or the load failed), else 404 `model_not_found` listing the ids of the
    models there are for this `kind` of request (`llm`, `embeddings`, or None for any)."""
    logger.warning("LM Studio refused model %r: %s: %s", requested, type(exc).__name__, exc.message)
    known = next((m for m in models if m.id == requested), None)
    if known is not None and not known.is_loaded:
        return ServiceUnavailableError(
            f"Model {requested!r} is downloaded but not loaded, and LM Studio did not load it "
            "(its just-in-time loading is off, or loading failed)",
            code="no_model_loaded",
            details={
                "model": requested,
                "loaded": [m.id for m in models if m.is_loaded],
                "hint": NO_MODEL_HINT,
            },
        )
    available = [m.id for m in models if kind is None or (m.type == "embeddings") == (kind == "embeddings")]
    what = (
        f"Model {requested!r} not found"
        if known is None
        else f"Model {requested!r} ({known.type or 'of another kind'}) cannot serve this request"
    )
    return NotFoundError(
        f"{what}; available models: {', '.join(available) or 'none'}",
        code="model_not_found",
        details={"model": requested, "available": available},
    )


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
