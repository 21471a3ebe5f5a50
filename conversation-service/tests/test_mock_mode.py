"""Mock mode: the service on MongoDB alone, with built-in auth and characters; refused in production."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import ValidationError

from app.clients.mock import MOCK_CHARACTERS
from app.config import Settings
from app.main import create_app
from chat_common.testing import serve_app
from chat_common.testing.fleet import FleetUser
from tests.conftest import make_settings

MIRA = "00000000-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def mock_url(mongodb_url: str) -> Iterator[str]:
    # No user-service, no character-service: their URLs lead nowhere.
    settings = make_settings(
        mongodb_url,
        mock_services=True,
        jwks_url="http://127.0.0.1:9/.well-known/jwks.json",
        user_service_url="http://127.0.0.1:9",
        character_service_url="http://127.0.0.1:9",
    )
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture
async def mock(mock_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mock_url, timeout=30) as http:
        yield http


async def _token(mock: httpx.AsyncClient, user_id: str) -> dict[str, str]:
    response = await mock.post("/api/v1/mock/token", json={"user_id": user_id})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_mock_mode_serves_conversations_with_nothing_but_mongodb(mock: httpx.AsyncClient) -> None:
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    mine, theirs = await _token(mock, me), await _token(mock, other)

    catalogue = await mock.get("/api/v1/mock/characters")
    created = await mock.post("/api/v1/conversations", json={"character_id": MIRA}, headers=mine)
    unknown = await mock.post("/api/v1/conversations", json={"character_id": str(uuid.uuid4())}, headers=mine)
    listed = await mock.get("/api/v1/conversations", headers=mine)
    foreign = await mock.get(f"/api/v1/conversations/{created.json()['id']}", headers=theirs)

    assert {c["id"] for c in catalogue.json()} == set(MOCK_CHARACTERS)
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == me
    assert created.json()["character"]["name"] == "Captain Mira"
    assert created.json()["persona"]["id"] is None
    assert unknown.status_code == 404
    assert [c["id"] for c in listed.json()["items"]] == [created.json()["id"]]
    assert foreign.status_code == 404


async def test_mock_mode_refuses_tokens_it_did_not_sign(mock: httpx.AsyncClient, alice: FleetUser) -> None:
    response = await mock.get("/api/v1/conversations", headers=alice.headers)

    assert response.status_code == 401


async def test_a_mock_token_needs_a_user_id(mock: httpx.AsyncClient) -> None:
    for body in ({}, {"user_id": "me"}, {"user_id": str(uuid.uuid4()), "role": "admin"}):
        assert (await mock.post("/api/v1/mock/token", json=body)).status_code == 422


async def test_the_real_service_has_no_mock_routes_and_refuses_mock_tokens(
    client: httpx.AsyncClient, mock: httpx.AsyncClient
) -> None:
    mock_headers = await _token(mock, str(uuid.uuid4()))

    minted = await client.post("/api/v1/mock/token", json={"user_id": str(uuid.uuid4())})
    used = await client.get("/api/v1/conversations", headers=mock_headers)

    assert minted.status_code == 404
    assert used.status_code == 401


def test_production_refuses_mock_mode() -> None:
    with pytest.raises(ValidationError, match="MOCK_SERVICES must be false"):
        Settings(
            environment="production",
            mock_services=True,
            cors_origins=["https://chat.example.com"],
            mongodb_url="mongodb://db.internal:27017",
            conversation_service_client_secret="a-real-secret",
        )


def test_production_starts_with_safe_settings() -> None:
    settings = Settings(
        environment="production",
        cors_origins=["https://chat.example.com"],
        mongodb_url="mongodb://db.internal:27017",
        conversation_service_client_secret="a-real-secret",
    )

    assert settings.database_name == "conversation_service_production"
