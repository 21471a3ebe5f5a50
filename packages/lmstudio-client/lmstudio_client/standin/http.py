"""Small HTTP helpers every endpoint family of the stand-in uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope

from lmstudio_client.standin import behaviour as b
from lmstudio_client.standin.state import Standin


def standin_of(request: Request) -> Standin:
    return request.app.state.standin  # type: ignore[no-any-return]


def error(status_and_body: tuple[int, dict[str, Any]]) -> JSONResponse:
    status, body = status_and_body
    return JSONResponse(body, status_code=status)


async def json_body(request: Request) -> dict[str, Any] | JSONResponse:
    """The request's JSON object, or the error LM Studio answers for anything else."""
    try:
        body = await request.json()
    except ValueError:
        return error(b.bad_request("Invalid JSON in request body"))
    if not isinstance(body, dict):
        return error(b.bad_request("Request body must be a JSON object"))
    return body


def sse(event: dict[str, Any] | str) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def record_request(standin: Standin, scope: Scope, receive: Receive) -> Receive:
    """Read the request's body, log the request, and hand back a `receive` that replays the body."""
    chunks: list[bytes] = []
    message: Message = await receive()
    while message["type"] == "http.request":
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
        message = await receive()
    raw = b"".join(chunks)
    headers = Headers(scope=scope)
    standin.record(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "body": _parsed(raw),
            "authorization": "authorization" in headers,
            "request_id": headers.get("x-request-id"),
            "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
    )
    if message["type"] == "http.request":
        message = {**message, "body": raw, "more_body": False}
    replayed = [message]

    async def replay() -> Message:
        return replayed.pop() if replayed else await receive()

    return replay


def _parsed(raw: bytes) -> Any:
    """The body as JSON, or None when it is empty or not JSON."""
    try:
        return json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        return None
