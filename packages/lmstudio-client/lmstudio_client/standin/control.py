"""Control endpoints for tests (not part of LM Studio): `/__standin/config`, `/stats`, `/requests`,
`/reset`."""

from __future__ import annotations

import logging
from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmstudio_client.standin import behaviour as b
from lmstudio_client.standin.http import error, json_body, standin_of
from lmstudio_client.standin.state import StandinConfig, StandinModel, Stats

logger = logging.getLogger("lmstudio_client.standin")


async def config(request: Request) -> Response:
    """GET the behaviour; PATCH any StandinConfig fields."""
    standin = standin_of(request)
    if request.method == "PATCH":
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        for key, value in body.items():
            if key == "models":
                standin.config.models = [StandinModel(**m) for m in value]
            elif key == "request_log_size" and not _is_count(value):
                return error(b.bad_request("'request_log_size' must be a non-negative integer"))
            elif hasattr(standin.config, key):
                setattr(standin.config, key, value)
            else:
                return error(b.bad_request(f"unknown stand-in setting {key!r}"))
        logger.info("stand-in config changed: %s", body)
    return JSONResponse(asdict(standin.config))


async def stats(request: Request) -> Response:
    return JSONResponse(asdict(standin_of(request).stats))


async def requests(request: Request) -> Response:
    """GET the last requests LM Studio's routes received, oldest first (`?limit=N`: the last N); DELETE
    forgets them."""
    standin = standin_of(request)
    if request.method == "DELETE":
        standin.clear_requests()
        return Response(status_code=204)
    limit = request.query_params.get("limit")
    if limit is not None and not (limit.isascii() and limit.isdigit()):
        return error(b.bad_request("'limit' must be a non-negative integer"))
    return JSONResponse(standin.recorded(int(limit) if limit is not None else None))


async def reset(request: Request) -> Response:
    standin = standin_of(request)
    standin.config = StandinConfig(
        api_key=standin.config.api_key, request_log_size=standin.config.request_log_size
    )
    standin.stats = Stats()
    standin.clear_requests()
    return JSONResponse(asdict(standin.config))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


ROUTES = [
    Route("/__standin/config", config, methods=["GET", "PATCH"]),
    Route("/__standin/stats", stats, methods=["GET"]),
    Route("/__standin/requests", requests, methods=["GET", "DELETE"]),
    Route("/__standin/reset", reset, methods=["POST"]),
]
