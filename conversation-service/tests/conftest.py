"""conversation-service test fixtures: real user- and character-service processes on the session's
PostgreSQL and Redis, real MongoDB (embedded nx-27017 unless TEST_MONGODB_URL), and the service itself
in this process over real HTTP (so tests can move its clock)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from chat_common.testing import ServiceProcess, serve_app
from chat_common.testing.fleet import FleetUser, register_user, run_character_service, run_user_service

# One database for every app of this test process: Beanie binds its document classes to one.
DATABASE = f"conversation_service_test_{uuid.uuid4().hex[:8]}"


# The service clients user-service knows in these tests: conversation-service as in development, and
# callers of the internal routes with and without their scopes.
SERVICE_CLIENTS = {
    "conversation-service": {
        "secret": "dev-conversation-service-secret",
        "scopes": ["characters:counters", "personas:read"],
    },
    "conversations-reader": {"secret": "dev-reader-secret", "scopes": ["conversations:read"]},
    "conversations-writer": {"secret": "dev-writer-secret", "scopes": ["conversations:write"]},
}


@pytest.fixture(scope="session")
def user_service(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("user-service")
    clients = json.dumps(SERVICE_CLIENTS)
    with run_user_service(postgres_url, redis_url, data_dir, SERVICE_CLIENTS=clients) as service:
        yield service


def service_token(user_service_url: str, client_id: str) -> str:
    """A real service token from user-service by client credentials."""
    client = SERVICE_CLIENTS[client_id]
    response = httpx.post(
        f"{user_service_url}/api/v1/auth/service-token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client["secret"],
            "scope": " ".join(client["scopes"]),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def reader_headers(user_service: ServiceProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {service_token(user_service.url, 'conversations-reader')}"}


@pytest.fixture(scope="session")
def writer_headers(user_service: ServiceProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {service_token(user_service.url, 'conversations-writer')}"}


@pytest.fixture(scope="session")
def character_service(
    postgres_url: str, user_service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    jwks = f"{user_service.url}/.well-known/jwks.json"
    with run_character_service(postgres_url, jwks, tmp_path_factory.mktemp("character-service")) as service:
        yield service


def make_settings(mongodb_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "json_logs": False,
        "mongodb_url": mongodb_url,
        "mongodb_database": DATABASE,
        "mongodb_timeout_seconds": 2.0,
        "downstream_timeout_seconds": 3.0,
        # Tests run the retry pass themselves (CharacterCounter.retry_pending) with the clock moved.
        "counter_retry_interval_seconds": 3600,
        **overrides,
    }
    return Settings(**values)


def fleet_settings(
    mongodb_url: str, user_service: ServiceProcess, character_service: ServiceProcess, **overrides: Any
) -> Settings:
    return make_settings(
        mongodb_url,
        jwks_url=f"{user_service.url}/.well-known/jwks.json",
        user_service_url=user_service.url,
        character_service_url=character_service.url,
        **overrides,
    )


@pytest.fixture(scope="session")
def app(mongodb_url: str, user_service: ServiceProcess, character_service: ServiceProcess) -> FastAPI:
    return create_app(fleet_settings(mongodb_url, user_service, character_service))


@pytest.fixture(autouse=True)
def real_time(app: FastAPI) -> Iterator[None]:
    """Every test starts and ends on the real clock, whatever it moved."""
    app.state.clock.offset = timedelta(0)
    yield
    app.state.clock.offset = timedelta(0)


@pytest.fixture(scope="session")
def base_url(app: FastAPI) -> Iterator[str]:
    with serve_app(app) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield http


@pytest.fixture
async def characters(character_service: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=character_service.url, timeout=30) as http:
        yield http


@pytest.fixture
async def users(user_service: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=user_service.url, timeout=30) as http:
        yield http


@pytest.fixture
def alice(user_service: ServiceProcess) -> FleetUser:
    return register_user(user_service.url, "alice")


@pytest.fixture
def bob(user_service: ServiceProcess) -> FleetUser:
    return register_user(user_service.url, "bob")


@pytest.fixture
def make_character(characters: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    async def factory(owner: FleetUser, **fields: Any) -> dict[str, Any]:
        body = {
            "name": f"Mira {uuid.uuid4().hex[:6]}",
            "greeting": "Welcome aboard!",
            "alternate_greetings": ["Ahoy!", "Who goes there?"],
            "avatar_url": "https://example.com/mira.png",
            "visibility": "public",
            **fields,
        }
        response = await characters.post("/api/v1/characters", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return factory


@pytest.fixture
def make_persona(users: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    async def factory(owner: FleetUser, **fields: Any) -> dict[str, Any]:
        body = {"name": f"Traveller {uuid.uuid4().hex[:4]}", "description": "A curious traveller", **fields}
        response = await users.post("/api/v1/users/me/personas", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return factory


@pytest.fixture
def start_conversation(client: httpx.AsyncClient, make_character):  # type: ignore[no-untyped-def]
    """A conversation of `owner` with a new public character of theirs (or `character_id`)."""

    async def factory(owner: FleetUser, character_id: str | None = None, **fields: Any) -> dict[str, Any]:
        if character_id is None:
            character_id = (await make_character(owner))["id"]
        body = {"character_id": character_id, **fields}
        response = await client.post("/api/v1/conversations", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return factory
