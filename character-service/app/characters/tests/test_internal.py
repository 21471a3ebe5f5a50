"""Counters for the other services, behind the `characters:counters` scope."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient

from app.characters.tests.conftest import Caller, CharacterFactory, error_code
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


def counters_url(character: dict[str, Any]) -> str:
    return f"/api/v1/internal/characters/{character['id']}/counters"


async def test_repeated_idempotency_key_adds_once_and_returns_current_counters(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = counters_url(character)
    change = {"conversations": 1, "messages": 2, "idempotency_key": "conversation-1:created"}
    first = await client.post(url, json=change, headers=service_headers)
    await client.post(url, json={"messages": 5}, headers=service_headers)

    retry = await client.post(url, json=change, headers=service_headers)

    assert first.json() == {"id": character["id"], "conversation_count": 1, "message_count": 2}
    assert retry.status_code == 200
    assert retry.json() == {"id": character["id"], "conversation_count": 1, "message_count": 7}


async def test_idempotency_key_is_stripped(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = counters_url(character)
    await client.post(url, json={"messages": 1, "idempotency_key": "  key-1 "}, headers=service_headers)

    retry = await client.post(url, json={"messages": 1, "idempotency_key": "key-1"}, headers=service_headers)

    assert retry.json()["message_count"] == 1


async def test_same_idempotency_key_with_other_amounts_is_409(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = counters_url(character)
    await client.post(url, json={"messages": 1, "idempotency_key": "k"}, headers=service_headers)

    other = await client.post(url, json={"messages": 2, "idempotency_key": "k"}, headers=service_headers)
    other_kind = await client.post(
        url, json={"conversations": 1, "idempotency_key": "k"}, headers=service_headers
    )

    assert other.status_code == 409
    assert error_code(other) == "idempotency_key_in_use"
    assert other_kind.status_code == 409
    detail = (await client.get(f"/api/v1/characters/{character['id']}", headers=alice.headers)).json()
    assert (detail["conversation_count"], detail["message_count"]) == (0, 1)


async def test_idempotency_key_is_scoped_to_the_character(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    first, second = await make_character(alice), await make_character(alice)
    change = {"messages": 1, "idempotency_key": "shared-key"}
    await client.post(counters_url(first), json=change, headers=service_headers)

    response = await client.post(
        counters_url(second), json={**change, "messages": 3}, headers=service_headers
    )

    assert response.status_code == 200
    assert response.json()["message_count"] == 3


async def test_changes_without_a_key_are_each_counted(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = counters_url(character)
    for _ in range(3):
        response = await client.post(url, json={"messages": 1}, headers=service_headers)
    assert response.json()["message_count"] == 3


async def test_concurrent_retries_with_one_key_add_once(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    change = {"conversations": 1, "messages": 1, "idempotency_key": "one-key"}

    responses = await asyncio.gather(
        *(client.post(counters_url(character), json=change, headers=service_headers) for _ in range(20))
    )

    assert [r.status_code for r in responses] == [200] * 20
    assert {(r.json()["conversation_count"], r.json()["message_count"]) for r in responses} == {(1, 1)}


async def test_concurrent_changes_with_distinct_keys_each_add(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = counters_url(character)

    responses = await asyncio.gather(
        *(
            client.post(url, json={"messages": 1, "idempotency_key": f"key-{i}"}, headers=service_headers)
            for i in range(50)
        )
    )

    assert [r.status_code for r in responses] == [200] * 50
    detail = (await client.get(f"/api/v1/characters/{character['id']}", headers=alice.headers)).json()
    assert detail["message_count"] == 50


@pytest.mark.parametrize(
    "key",
    ["", "   ", "k" * 201, "a\tb", "a\nb", "a\x00b", "a\x7fb", "a\u0085b", 123, ["k"]],
    ids=["empty", "blank", "too-long", "tab", "newline", "nul", "del", "c1-control", "number", "list"],
)
async def test_malformed_idempotency_key_is_422(
    client: AsyncClient,
    alice: Caller,
    service_headers: dict[str, str],
    make_character: CharacterFactory,
    key: Any,
) -> None:
    character = await make_character(alice)

    response = await client.post(
        counters_url(character), json={"messages": 1, "idempotency_key": key}, headers=service_headers
    )

    assert response.status_code == 422
    detail = (await client.get(f"/api/v1/characters/{character['id']}", headers=alice.headers)).json()
    assert detail["message_count"] == 0


async def test_longest_idempotency_key_is_accepted(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    change = {"messages": 1, "idempotency_key": "é" * 200}
    await client.post(counters_url(character), json=change, headers=service_headers)

    retry = await client.post(counters_url(character), json=change, headers=service_headers)

    assert retry.status_code == 200
    assert retry.json()["message_count"] == 1


async def test_keyed_change_of_unknown_character_is_404(
    client: AsyncClient, service_headers: dict[str, str]
) -> None:
    url = "/api/v1/internal/characters/00000000-0000-0000-0000-000000000000/counters"
    change = {"messages": 1, "idempotency_key": "k"}
    first = await client.post(url, json=change, headers=service_headers)
    retry = await client.post(url, json=change, headers=service_headers)
    assert (first.status_code, retry.status_code) == (404, 404)
    assert error_code(first) == "not_found"


async def test_keyed_change_of_deleted_character_is_404(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = counters_url(character)
    change = {"messages": 1, "idempotency_key": "k"}
    await client.post(url, json=change, headers=service_headers)
    await client.delete(f"/api/v1/characters/{character['id']}", headers=alice.headers)

    retry = await client.post(url, json=change, headers=service_headers)
    fresh = await client.post(url, json={**change, "idempotency_key": "other"}, headers=service_headers)

    assert (retry.status_code, fresh.status_code) == (404, 404)
