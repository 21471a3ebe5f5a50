"""The batch counters route message-service flushes its follow-ups through: many keyed changes in one
transaction, each applied once per character and key, answered per change."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from httpx import AsyncClient

from app.characters.tests.conftest import Caller, CharacterFactory, error_code
from chat_common.testing import TokenMint

BATCH = "/api/v1/internal/characters/counters"
UNKNOWN = "00000000-0000-0000-0000-000000000000"


def _change(
    character: dict[str, Any] | str, key: str, messages: int = 1, conversations: int = 0
) -> dict[str, Any]:
    character_id = character if isinstance(character, str) else character["id"]
    return {
        "character_id": character_id,
        "idempotency_key": key,
        "messages": messages,
        "conversations": conversations,
    }


async def _counts(client: AsyncClient, owner: Caller, character: dict[str, Any]) -> tuple[int, int]:
    detail = (await client.get(f"/api/v1/characters/{character['id']}", headers=owner.headers)).json()
    return detail["conversation_count"], detail["message_count"]


def _statuses(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["status"] for item in response.json()["items"]]


async def test_a_batch_applies_each_change_once_and_a_retry_applies_nothing(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    first, second = await make_character(alice), await make_character(alice)
    batch = {
        "changes": [
            _change(first, "exchange:1", messages=2),
            _change(second, "exchange:2", messages=2),
            _change(first, "conversation:1", messages=0, conversations=1),
        ]
    }

    applied = await client.post(BATCH, json=batch, headers=service_headers)
    retried = await client.post(BATCH, json=batch, headers=service_headers)

    assert _statuses(applied) == ["applied"] * 3
    assert [(i["conversation_count"], i["message_count"]) for i in applied.json()["items"]] == [
        (1, 2),
        (0, 2),
        (1, 2),
    ]
    assert _statuses(retried) == ["repeated"] * 3
    assert await _counts(client, alice, first) == (1, 2)
    assert await _counts(client, alice, second) == (0, 2)


async def test_keys_are_shared_with_the_single_route_both_ways(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    single = f"/api/v1/internal/characters/{character['id']}/counters"
    await client.post(single, json={"messages": 2, "idempotency_key": "exchange:a"}, headers=service_headers)

    batch = await client.post(
        BATCH,
        json={"changes": [_change(character, "exchange:a", 2), _change(character, "exchange:b", 2)]},
        headers=service_headers,
    )
    single_after = await client.post(
        single, json={"messages": 2, "idempotency_key": "exchange:b"}, headers=service_headers
    )

    assert _statuses(batch) == ["repeated", "applied"]
    assert single_after.status_code == 200 and single_after.json()["message_count"] == 4
    assert await _counts(client, alice, character) == (0, 4)


async def test_a_key_reused_with_other_amounts_is_a_conflict_and_the_others_still_apply(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    await client.post(BATCH, json={"changes": [_change(character, "k1", 1)]}, headers=service_headers)

    response = await client.post(
        BATCH,
        json={
            "changes": [
                _change(character, "k1", 5),
                _change(character, "k2", 1),
                _change(character, "k2", 3),  # the same key twice in one batch, other amounts
                _change(character, "k3", 1),
                _change(character, "k3", 1),  # and with the same amounts: one change
            ]
        },
        headers=service_headers,
    )

    assert _statuses(response) == ["conflict", "applied", "conflict", "applied", "repeated"]
    assert await _counts(client, alice, character) == (0, 3)


async def test_unknown_and_deleted_characters_are_reported_and_the_others_still_apply(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    live, doomed = await make_character(alice), await make_character(alice)
    await client.post(BATCH, json={"changes": [_change(doomed, "before", 1)]}, headers=service_headers)
    await client.delete(f"/api/v1/characters/{doomed['id']}", headers=alice.headers)

    response = await client.post(
        BATCH,
        json={
            "changes": [
                _change(UNKNOWN, "x"),
                _change(doomed, "before", 1),
                _change(doomed, "after", 1),
                _change(live, "ok", 1),
            ]
        },
        headers=service_headers,
    )

    assert _statuses(response) == ["not_found", "not_found", "not_found", "applied"]
    assert response.json()["items"][0]["message_count"] is None
    assert await _counts(client, alice, live) == (0, 1)


async def test_concurrent_overlapping_batches_apply_each_key_once(
    client: AsyncClient, alice: Caller, service_headers: dict[str, str], make_character: CharacterFactory
) -> None:
    characters = [await make_character(alice) for _ in range(3)]
    changes = [_change(c, f"exchange:{i}", 2) for i in range(20) for c in characters]
    batches = []
    for seed in range(12):  # each batch a shuffled overlapping slice: rows locked in other orders
        chosen = random.Random(seed).sample(changes, 30)
        batches.append({"changes": chosen})

    responses = await asyncio.gather(*(client.post(BATCH, json=b, headers=service_headers) for b in batches))

    assert [r.status_code for r in responses] == [200] * 12
    applied = [
        (i["character_id"], i["idempotency_key"])
        for r in responses
        for i in r.json()["items"]
        if i["status"] == "applied"
    ]
    assert len(applied) == len(set(applied))
    for character in characters:
        keys = {key for character_id, key in applied if character_id == character["id"]}
        assert await _counts(client, alice, character) == (0, 2 * len(keys))


@pytest.mark.parametrize(
    "body",
    [
        {"changes": []},
        {"changes": [_change(UNKNOWN, f"k{i}") for i in range(201)]},
        {"changes": [{"character_id": UNKNOWN, "messages": 1}]},
        {"changes": [_change(UNKNOWN, "a\nb")]},
        {"changes": [_change(UNKNOWN, "")]},
        {"changes": [_change("not-a-uuid", "k")]},
        {"changes": [_change(UNKNOWN, "k", messages=1001)]},
        {},
    ],
    ids=["empty", "too-many", "no-key", "control-key", "empty-key", "bad-id", "too-large", "no-changes"],
)
async def test_a_malformed_batch_is_422_and_applies_nothing(
    client: AsyncClient,
    alice: Caller,
    service_headers: dict[str, str],
    make_character: CharacterFactory,
    body: dict[str, Any],
) -> None:
    character = await make_character(alice)
    with_good = {"changes": [_change(character, "good"), *body["changes"]]} if body.get("changes") else body

    response = await client.post(BATCH, json=with_good, headers=service_headers)

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert await _counts(client, alice, character) == (0, 0)


async def test_the_batch_route_refuses_users_and_unscoped_services(
    client: AsyncClient, alice: Caller, token_mint: TokenMint, make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    body = {"changes": [_change(character, "k")]}
    other = {"Authorization": f"Bearer {token_mint.service('llm-service', ['models:read'])}"}

    as_user = await client.post(BATCH, json=body, headers=alice.headers)
    unscoped = await client.post(BATCH, json=body, headers=other)

    assert (as_user.status_code, unscoped.status_code) == (403, 403)
    assert await _counts(client, alice, character) == (0, 0)
