"""user-service test fixtures: the app on real PostgreSQL and Redis, clients, users and tokens."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from chat_common.testing import create_database, serve_app

PASSWORD = "Sturdy-pass-2024"


@pytest.fixture(scope="session")
async def settings(
    postgres_url: str, redis_url: str, rsa_private_key_pem: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        environment="test",
        database_url=await create_database(postgres_url, "users"),
        redis_url=redis_url,
        redis_prefix=f"test-{uuid.uuid4().hex[:8]}",
        jwt_private_key=rsa_private_key_pem,  # type: ignore[arg-type]
        data_dir=Path(tmp_path_factory.mktemp("data")),
        bcrypt_rounds=4,
        json_logs=False,
        reservation_sweep_seconds=3600,
        first_admin_email="root@example.com",
        first_admin_password="Admin-pass-2024",  # type: ignore[arg-type]
        first_admin_username="root",
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def _random_ip() -> str:
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client with its own IP, so per-IP login limits of one test do not leak into another."""
    transport = ASGITransport(app=app, client=(_random_ip(), 40000))
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class AppUser:
    id: str
    email: str
    username: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(client: AsyncClient, login_name: str, password: str) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/token", data={"username": login_name, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


UserFactory = Callable[..., Awaitable[AppUser]]


@pytest.fixture
def make_user(client: AsyncClient) -> UserFactory:
    async def factory(**overrides: Any) -> AppUser:
        suffix = uuid.uuid4().hex[:10]
        body = {
            "email": f"user{suffix}@example.com",
            "username": f"user{suffix}",
            "display_name": f"User {suffix}",
            "password": PASSWORD,
            **overrides,
        }
        response = await client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        tokens = await login(client, body["username"], body["password"])
        return AppUser(
            id=response.json()["id"],
            email=body["email"],
            username=body["username"],
            password=body["password"],
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
        )

    return factory


@pytest.fixture
async def admin_headers(client: AsyncClient) -> dict[str, str]:
    """The first admin, created at start-up from FIRST_ADMIN_EMAIL / FIRST_ADMIN_PASSWORD."""
    tokens = await login(client, "root@example.com", "Admin-pass-2024")
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def service_token(
    client: AsyncClient,
    scope: str = "credits:write",
    *,
    client_id: str = "message-service",
    secret: str | None = None,
) -> dict[str, str]:
    """Authorization headers with a service token by client credentials (dev secrets by default)."""
    response = await client.post(
        "/api/v1/auth/service-token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret or f"dev-{client_id}-secret",
            "scope": scope,
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def service_headers(client: AsyncClient) -> dict[str, str]:
    return await service_token(client)


def assert_error_shape(body: dict[str, Any], code: str | None = None) -> None:
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["message"]
    assert error["request_id"]
    if code is not None:
        assert error["code"] == code, body


@pytest.fixture
def start_app(settings: Settings) -> Callable[..., AbstractAsyncContextManager[FastAPI]]:
    """Start another instance of the service, with its own Redis prefix and the given overrides."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        values = {"redis_prefix": f"test-{uuid.uuid4().hex[:8]}", **overrides}
        application = create_app(settings.model_copy(update=values))
        async with application.router.lifespan_context(application):
            yield application

    return factory


@pytest.fixture
async def fresh_database_url(postgres_url: str) -> str:
    """An empty database of its own, for tests that need to know every account in it."""
    return await create_database(postgres_url, "users")


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    """The service over real HTTP (uvicorn on a free port) with login counters of its own."""
    fresh = settings.model_copy(update={"redis_prefix": f"test-{uuid.uuid4().hex[:8]}"})
    with serve_app(create_app(fresh)) as url:
        yield url
