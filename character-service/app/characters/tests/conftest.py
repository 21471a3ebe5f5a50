"""character-service test fixtures: the app on real PostgreSQL, a JWKS issuer over HTTP, users."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from chat_common.testing import TokenMint, create_database


@pytest.fixture(scope="session")
async def settings(postgres_url: str, jwks_url: str) -> Settings:
    return Settings(
        environment="test",
        json_logs=False,
        jwks_url=jwks_url,
        database_url=await create_database(postgres_url, "characters"),
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


class Caller:
    """A signed-in caller: its id and the headers that carry its token."""

    def __init__(self, token_mint: TokenMint, role: str = "user") -> None:
        self.id = str(uuid.uuid4())
        self.headers = {"Authorization": f"Bearer {token_mint.user(self.id, role=role)}"}


@pytest.fixture
def alice(token_mint: TokenMint) -> Caller:
    return Caller(token_mint)


@pytest.fixture
def bob(token_mint: TokenMint) -> Caller:
    return Caller(token_mint)


@pytest.fixture
def admin(token_mint: TokenMint) -> Caller:
    return Caller(token_mint, role="admin")


@pytest.fixture
def service_headers(token_mint: TokenMint) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_mint.service('message-service', ['characters:counters'])}"}


CharacterFactory = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def make_character(client: AsyncClient) -> CharacterFactory:
    async def factory(owner: Caller, **fields: Any) -> dict[str, Any]:
        body = {"name": f"Character {uuid.uuid4().hex[:6]}", "description": "A test character", **fields}
        response = await client.post("/api/v1/characters", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return factory


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    return str(body["error"]["code"])
