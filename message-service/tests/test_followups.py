"""What a finished reply tells the other services: each message counted once, however it came."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from chat_common.testing.fleet import FleetUser
from tests.conftest import DATABASE, Fleet


def _character_messages(fleet: Fleet, owner: FleetUser, character_id: str) -> int:
    response = httpx.get(f"{fleet.characters}/api/v1/characters/{character_id}", headers=owner.headers)
    return int(response.json()["message_count"])


async def _until(condition: Any) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met within 10 s")


async def test_a_send_a_regenerate_and_a_continue_count_each_message_once(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    character = fleet.character(alice)
    conversation = fleet.conversation(alice, character["id"])
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!"},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text

    regenerated = await client.post(
        f"/api/v1/messages/{sent.json()['reply']['id']}/regenerate", json={}, headers=alice.headers
    )
    assert regenerated.status_code == 201, regenerated.text
    continued = await client.post(
        f"/api/v1/messages/{regenerated.json()['reply']['id']}/continue", json={}, headers=alice.headers
    )
    assert continued.status_code == 200, continued.text

    # the user message, its first reply and the regenerated one (continued, still one message)
    await _until(lambda: _character_messages(fleet, alice, character["id"]) == 3)
    await _until(lambda: fleet.read_conversation(alice, conversation["id"])["message_count"] == 3)
    await asyncio.sleep(0.5)  # nothing more arrives later
    assert _character_messages(fleet, alice, character["id"]) == 3
    assert fleet.read_conversation(alice, conversation["id"])["message_count"] == 3


async def test_a_finished_reply_is_left_with_its_credits_committed_and_its_follow_ups_done(
    client: httpx.AsyncClient, mongodb_url: str, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)

    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!"},
        headers=alice.headers,
    )

    assert sent.status_code == 201, sent.text
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        stored = await mongo[DATABASE]["messages"].find_one({"_id": ObjectId(sent.json()["reply"]["id"])})
    finally:
        await mongo.close()
    assert stored is not None
    assert stored["generation"]["credits"] == "committed"
    assert not stored["followups_pending"]
    assert stored["with_parent"]
