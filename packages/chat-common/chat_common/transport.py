"""The fleet's HTTP transport: httpx on top of aiohttp's connection pool.

httpcore's pool polls every pooled socket on each request (encode/httpcore#928), and its anyio and
h11 layers cost more than aiohttp's parser: with it, HTTP was about a third of message-service's
CPU per chat exchange and most of llm-service's at a few dozen concurrent streams. httpx-aiohttp
maps some aiohttp errors loosely (a refused connection arrives as ConnectTimeout), so they are
mapped again here to what actually happened.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class PooledTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ConnectionTimeoutError | asyncio.TimeoutError):
                raise
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(cause), request=request) from cause
            raise
