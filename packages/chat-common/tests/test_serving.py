"""Proxy headers are trusted only from the proxies FORWARDED_ALLOW_IPS names (none by default)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import ValidationError

from chat_common.app import create_service_app
from chat_common.settings import CommonSettings
from chat_common.testing import serve_app

FORWARDED = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https"}


def make_app(settings: CommonSettings) -> FastAPI:
    app = create_service_app(settings, title="demo", description="demo")

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        assert request.client is not None
        return {"ip": request.client.host, "scheme": request.url.scheme}

    return app


async def caller_seen(settings: CommonSettings) -> dict[str, str]:
    with serve_app(make_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            response = await http.get("/whoami", headers=FORWARDED)
    assert response.status_code == 200
    return dict(response.json())


async def test_by_default_a_local_client_cannot_claim_another_address() -> None:
    assert await caller_seen(CommonSettings(service_name="demo")) == {"ip": "127.0.0.1", "scheme": "http"}


async def test_a_trusted_proxy_names_the_client() -> None:
    settings = CommonSettings(service_name="demo", forwarded_allow_ips="127.0.0.1, ::1")
    assert await caller_seen(settings) == {"ip": "10.9.9.9", "scheme": "https"}


async def test_headers_from_an_address_that_is_not_the_trusted_proxy_are_ignored() -> None:
    settings = CommonSettings(service_name="demo", forwarded_allow_ips="10.0.0.0/8")
    assert await caller_seen(settings) == {"ip": "127.0.0.1", "scheme": "http"}


@pytest.mark.parametrize("value", ["proxy.internal", "10.0.0.300", "127.0.0.1, x", "10.0.0.0/33"])
def test_a_proxy_that_is_not_an_address_or_network_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="FORWARDED_ALLOW_IPS"):
        CommonSettings(forwarded_allow_ips=value)
