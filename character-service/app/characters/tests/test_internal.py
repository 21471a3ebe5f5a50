"""Counters for the other services, behind the `characters:counters` scope."""

from __future__ import annotations

from httpx import AsyncClient

from app.characters.tests.conftest import Caller, CharacterFactory
from chat_common.testing import TokenMint


async def test_service_increments_counters(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = f"/api/v1/internal/characters/{character['id']}/counters"
    await client.post(url, json={"conversations": 1}, headers=service_headers)
    response = await client.post(url, json={"messages": 2, "conversations": 1}, headers=service_headers)
    assert response.json() == {"id": character["id"], "conversation_count": 2, "message_count": 2}
    floor = await client.post(url, json={"messages": -5}, headers=service_headers)
    assert floor.json()["message_count"] == 0
    detail = (await client.get(f"/api/v1/characters/{character['id']}", headers=alice.headers)).json()
    assert detail["conversation_count"] == 2


async def test_users_and_unscoped_services_are_refused(
    client: AsyncClient, alice: Caller, token_mint: TokenMint, make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = f"/api/v1/internal/characters/{character['id']}/counters"
    assert (await client.post(url, json={"messages": 1}, headers=alice.headers)).status_code == 403
    other = {"Authorization": f"Bearer {token_mint.service('llm-service', ['models:read'])}"}
    assert (await client.post(url, json={"messages": 1}, headers=other)).status_code == 403


async def test_counters_of_unknown_character_are_404(
    client: AsyncClient, service_headers: dict[str, str]
) -> None:
    url = "/api/v1/internal/characters/00000000-0000-0000-0000-000000000000/counters"
    assert (await client.post(url, json={"messages": 1}, headers=service_headers)).status_code == 404
