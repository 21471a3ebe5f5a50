"""ASGI middleware shared by every service: request ids and request body limits."""

from __future__ import annotations

import re
from functools import lru_cache

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_common.errors import error_response
from chat_common.validation import MAX_JSON_DEPTH, is_json_media_type, json_depth_exceeds, media_type

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def valid_request_id(value: str) -> bool:
    """Accept a caller's request id when it is short and printable; otherwise a new one is made."""
    return bool(_REQUEST_ID.match(value))


# Raised while the body streams in, as HTTPExceptions so that FastAPI's body reader lets them through
# to the error handlers (it turns any other exception into a vague 400).
class _BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request body exceeds the limit of {max_bytes} bytes")


class _JsonTooDeep(HTTPException):
    def __init__(self) -> None:
        super().__init__(422, f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")


@lru_cache(maxsize=256)
def parsed_as_json(content_type: bytes | None) -> bool:
    """Whether FastAPI parses a body with this Content-Type as JSON: its own test, so that no value
    (odd case, Unicode whitespace, parameters) makes the two disagree. Without a content type (or an
    empty one) a route reading `request.json()` still parses the body, so it counts as JSON."""
    if not content_type:
        return True
    return is_json_media_type(media_type(content_type.decode("latin-1")))  # as Starlette decodes headers


def first_header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a header, as Starlette's `request.headers[name]` reads it."""
    return next((value for key, value in scope.get("headers", []) if key == name), None)


class BodyLimitsMiddleware:
    """Refuse request bodies above `max_bytes` with 413 (by header or while streaming), and JSON
    bodies nested deeper than `MAX_JSON_DEPTH` with 422 before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_length = first_header(scope, b"content-length")
        if content_length is not None and content_length.isdigit() and int(content_length) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0
        check_depth = parsed_as_json(first_header(scope, b"content-type"))
        chunks: list[bytes] = []
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
                if check_depth:
                    chunks.append(chunk)
                    if not message.get("more_body", False) and self._too_deep(chunks):
                        raise _JsonTooDeep()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._reject(scope, receive, send)

    @staticmethod
    def _too_deep(chunks: list[bytes]) -> bool:
        return json_depth_exceeds(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"Request body exceeds the limit of {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class TrailingSlashMiddleware:
    """Serve `/path/` as `/path`: no route of the fleet ends with a slash, and a client that adds one
    expects the resource, not an empty 307 to follow (which drops a POST's body in some clients)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = dict(scope, path=path.rstrip("/") or "/")
            raw_path = scope.get("raw_path")
            if raw_path is not None:
                scope["raw_path"] = raw_path.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
