"""The one error shape of the fleet, its exception classes and the handlers that map them."""

from __future__ import annotations

import logging
from typing import Any

from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from chat_common.validation import is_json_media_type, media_type

logger = logging.getLogger(__name__)


class AppError(Exception):
    """Base of every error a service raises on purpose; carries its HTTP status and code."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers
        if code is not None:
            self.code = code


class BadRequestError(AppError):
    status_code, code = 400, "bad_request"


class UnauthorizedError(AppError):
    """401 with the bare `Bearer` challenge: no credentials were given (RFC 6750 3.1)."""

    status_code, code = 401, "unauthorized"

    def __init__(self, message: str = "Not authenticated", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class InvalidTokenError(UnauthorizedError):
    """401 for a bearer token that was given but is refused (malformed, expired, revoked, its account
    gone): the challenge says so with `error="invalid_token"` (RFC 6750 3.1)."""

    code = "invalid_token"

    def __init__(self, message: str = "Invalid token", **kwargs: Any) -> None:
        description = message.replace("\\", "").replace('"', "'")
        kwargs.setdefault(
            "headers",
            {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
        )
        super().__init__(message, **kwargs)


class PaymentRequiredError(AppError):
    status_code, code = 402, "insufficient_credits"


class ForbiddenError(AppError):
    status_code, code = 403, "forbidden"


class InsufficientScopeError(ForbiddenError):
    """403 for a valid token without the scopes an endpoint needs (RFC 6750 3.1)."""

    def __init__(self, message: str, *, scope: str, **kwargs: Any) -> None:
        kwargs.setdefault(
            "headers", {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}
        )
        super().__init__(message, **kwargs)


class NotFoundError(AppError):
    status_code, code = 404, "not_found"


class ConflictError(AppError):
    status_code, code = 409, "conflict"


class PayloadTooLargeError(AppError):
    status_code, code = 413, "payload_too_large"


class UnprocessableError(AppError):
    status_code, code = 422, "validation_error"


class RateLimitedError(AppError):
    status_code, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(max(1, retry_after))})
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BadGatewayError(AppError):
    status_code, code = 502, "bad_gateway"


class ServiceUnavailableError(AppError):
    status_code, code = 503, "service_unavailable"


class GatewayTimeoutError(AppError):
    status_code, code = 504, "gateway_timeout"


class ErrorDetail(BaseModel):
    """What went wrong, in every service's error responses."""

    code: str = Field(description="Stable machine-readable code, e.g. `not_found`, `validation_error`")
    message: str = Field(description="What went wrong, for a person")
    details: Any = Field(default=None, description="More about it, when there is more: fields, limits, ids")
    request_id: str | None = Field(description="The request's X-Request-ID, also in the service's logs")


class ErrorResponse(BaseModel):
    """The one error body of the fleet: `{"error": {...}}` on every 4xx and 5xx."""

    error: ErrorDetail

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "error": {
                        "code": "not_found",
                        "message": "The requested resource was not found",
                        "details": None,
                        "request_id": "3f0c6a2e9b7d4f1c8e5a0b2d4c6e8f10",
                    }
                }
            ]
        }
    }


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Build the shared error envelope, stamped with the current request id."""
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "request_id": correlation_id.get(),
        }
    }


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status_code, headers=headers)


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    # Pydantic puts the offending input and exception objects in the error; keep what a client needs.
    cleaned = []
    for err in errors:
        cleaned.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return cleaned


async def _app_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"
_HOW_TO_SEND = {
    JSON: "JSON with Content-Type: application/json (curl: --json '{...}')",
    FORM: f"a form with Content-Type: {FORM} (curl: -d 'name=value&...')",
    MULTIPART: f"{MULTIPART} (curl: -F 'name=@file')",
}


def expected_body_type(request: Request) -> str | None:
    """The media type the matched route's body parameters are read as (FastAPI decides it from them:
    File, Form or JSON); None when the route takes no body."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if body_field is None:
        return None
    return str(getattr(body_field.field_info, "media_type", JSON))


def _body_type_accepted(expected: str, received: str) -> bool:
    if expected == JSON:
        return is_json_media_type(received)  # FastAPI reads a body without a Content-Type as bytes
    if expected in (FORM, MULTIPART):
        # Starlette reads either as a form; a urlencoded one without the file says "file: Field required"
        return received in (FORM, MULTIPART)
    return received == expected


def _wrong_body_type(request: Request, errors: list[dict[str, Any]]) -> JSONResponse | None:
    """415 naming the expected Content-Type, when the body failed validation because it was sent as
    something else (JSON to a form endpoint, a form or a bare body to a JSON one): otherwise the
    caller would read "Input should be a valid dictionary" or "username: Field required"."""
    if not any(err["loc"][:1] == ["body"] for err in errors):
        return None
    expected = expected_body_type(request)
    received = media_type(request.headers.get("content-type"))
    if expected is None or _body_type_accepted(expected, received):
        return None
    sent = f"Content-Type {received}" if received else "no Content-Type"
    return error_response(
        415,
        "unsupported_media_type",
        f"This endpoint takes {_HOW_TO_SEND.get(expected, expected)}; the request was sent with {sent}",
        {"expected": expected, "received": received or None},
    )


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _clean_validation_errors(exc.errors())
    wrong_type = _wrong_body_type(request, details)
    if wrong_type is not None:
        return wrong_type
    first = details[0] if details else None
    message = "Request validation failed"
    if first:
        where = ".".join(part for part in first["loc"] if part != "body") or "body"
        message = f"{where}: {first['msg']}"
    return error_response(422, "validation_error", message, details)


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers at the request's path: Starlette's 405 names only
    those of the first route matching the path, and a path is often served by several. Each method
    is tried on a fresh scope, through the routes' own matching (included routers too)."""
    allowed = []
    for method in _METHOD_ORDER:
        probe: Scope = {
            "type": "http",
            "method": method,
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "headers": [],
        }
        if any(route.matches(dict(probe))[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 404 and message == "Not Found":
        message = "The requested resource was not found"
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; this path answers {', '.join(allowed)}"
    return error_response(exc.status_code, code, message, headers=headers or None)


async def _unhandled_handler(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    # Starlette answers an unhandled error outside every middleware, the request id's too: the
    # response names the request id its body gives, as every other response does.
    request_id = correlation_id.get()
    headers = {"X-Request-ID": request_id} if request_id else None
    return error_response(500, "internal_error", "An unexpected error occurred", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the shared envelope, once for the whole app."""
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
