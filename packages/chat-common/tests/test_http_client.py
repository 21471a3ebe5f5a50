"""The inter-service client: headers propagated, retries bounded, failures named and mapped."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chat_common.embedded import free_port
from chat_common.errors import (
    AppError,
    BadGatewayError,
    GatewayTimeoutError,
    ServiceUnavailableError,
    error_body,
)
from chat_common.http import ServiceClient
from chat_common.service_token import ServiceTokenProvider


def downstream() -> tuple[FastAPI, dict[str, int]]:
    app = FastAPI()
    calls = {"token": 0}

    @app.get("/echo")
    async def echo(request: Request) -> dict[str, str | None]:
        return {"auth": request.headers.get("authorization"), "rid": request.headers.get("x-request-id")}

    @app.get("/missing")
    async def missing() -> JSONResponse:
        return JSONResponse(error_body("not_found", "No such thing"), status_code=404)

    @app.get("/broke")
    async def broke() -> JSONResponse:
        body = error_body("insufficient_credits", "Insufficient credits", {"needed": 7, "balance": 3})
        return JSONResponse(body, status_code=402)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.post("/api/v1/auth/service-token")
    async def token() -> dict[str, object]:
        calls["token"] += 1
        return {"access_token": f"tok-{calls['token']}", "expires_in": 900, "token_type": "bearer"}

    return app, calls


def client_for(app: FastAPI, **kwargs: object) -> ServiceClient:
    return ServiceClient(
        "thing-service",
        "http://thing",
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        **kwargs,
    )  # type: ignore[arg-type]


async def test_auth_and_request_id_are_propagated() -> None:
    app, _ = downstream()
    client = client_for(app)
    correlation_id.set("rid-42")
    body = (await client.get("/echo", token="abc")).json()
    assert body == {"auth": "Bearer abc", "rid": "rid-42"}


async def test_downstream_4xx_keeps_status_and_code() -> None:
    app, _ = downstream()
    with pytest.raises(AppError) as info:
        await client_for(app).get("/missing")
    assert info.value.status_code == 404 and info.value.code == "not_found"
    assert info.value.details == {"service": "thing-service"}


async def test_downstream_4xx_details_travel_with_the_error() -> None:
    app, _ = downstream()
    with pytest.raises(AppError) as info:
        await client_for(app).get("/broke")
    assert info.value.status_code == 402 and info.value.code == "insufficient_credits"
    assert info.value.details == {"needed": 7, "balance": 3, "service": "thing-service"}


async def test_downstream_500_is_502_naming_the_service() -> None:
    app, _ = downstream()
    with pytest.raises(BadGatewayError) as info:
        await client_for(app).get("/boom")
    assert "thing-service" in info.value.message


async def test_timeout_is_504_naming_the_service() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts the connection, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ServiceClient("thing-service", f"http://127.0.0.1:{port}", read_timeout=0.2)
    with pytest.raises(GatewayTimeoutError) as info:
        await client.get("/slow")
    server.close()
    assert "thing-service" in info.value.message


async def test_unreachable_service_is_503_after_bounded_retries() -> None:
    port = free_port()  # nothing listens here: a real refused connection
    client = ServiceClient("ghost-service", f"http://127.0.0.1:{port}", retries=2, backoff=0.01)
    with pytest.raises(ServiceUnavailableError) as info:
        await client.get("/anything")
    assert info.value.details == {"service": "ghost-service"}


async def test_non_idempotent_call_is_not_retried() -> None:
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused", request=request)

    client = ServiceClient("x", "http://x", transport=httpx.MockTransport(refuse), retries=3, backoff=0)
    with pytest.raises(ServiceUnavailableError):
        await client.post("/charge")
    assert attempts == 1
    with pytest.raises(ServiceUnavailableError):
        await client.get("/read")
    assert attempts == 1 + 4


async def test_service_token_is_cached_until_near_expiry() -> None:
    app, calls = downstream()
    provider = ServiceTokenProvider(client_for(app), client_id="me", client_secret="s", scopes=["a"])
    assert await provider.token() == "tok-1"
    assert await provider.token() == "tok-1"
    assert calls["token"] == 1
    provider.refresh_margin = 1000  # now every token counts as about to expire
    assert await provider.token() == "tok-2"
