"""Redis plumbing shared by the services that use it: a client that outlives a Redis restart, and the
503 naming Redis when it is away."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat_common.errors import error_response

logger = logging.getLogger(__name__)

# What a lost Redis surfaces as (refused, reset, or no answer within the socket timeout).
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)


def redis_client(url: str, *, socket_timeout: float = 5.0, connect_timeout: float = 3.0) -> Redis:
    """A client whose pooled connections to a Redis that was restarted are replaced on their first use.

    Its pool keeps connections to the old server, which fail at once ("Connection closed by server"):
    such a command is sent again, twice at most, on a new connection. Only a refused or cut connection
    is retried, never a timeout, which a slow server may yet have carried out."""
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(RedisConnectionError,))
    return Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout, retry=retry
    )


async def _redis_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # The client's text names the host and port: it goes to the log, with the request id.
    logger.warning("Redis is unavailable: %s: %s", exc.__class__.__name__, exc)
    return error_response(503, "dependency_unavailable", "Redis is unavailable", {"service": "redis"})


def install_redis_error_handlers(app: FastAPI) -> None:
    """A lost Redis is a 503 naming it, never a 500 (called when the app is built)."""
    for error in UNAVAILABLE:
        app.add_exception_handler(error, _redis_unavailable)
