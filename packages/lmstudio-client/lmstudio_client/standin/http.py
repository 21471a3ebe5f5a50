"""Small HTTP helpers every endpoint family of the stand-in uses."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

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
