"""Analytics of real exchanges through the fleet, and the purge of deleted conversations' messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from redis.asyncio import Redis

from app.config import Settings
from chat_common.testing import ServiceProcess
from chat_common.testing.fleet import ADMIN, FleetUser, login
from lmstudio_client.testing import StandinProcess
from tests.conftest import DATABASE, Fleet
from tests.test_chat import sse_events

ME = "/api/v1/analytics/me"


@pytest.fixture
async def messages(mongodb_url: str) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    yield client[DATABASE]["messages"]
    await client.close()


def today() -> str:
    return datetime.now(UTC).date().isoformat()


async def send(
    client: httpx.AsyncClient, user: FleetUser, conversation_id: str, content: str
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": content, "max_tokens": 64},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def until(condition: Callable[[], Any], seconds: float = 15) -> None:
    for _ in range(int(seconds * 10)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds} s")


async def test_my_analytics_count_the_messages_tokens_and_credits_of_real_exchanges(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, messages: AsyncCollection[dict[str, Any]]
) -> None:
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    replies = [
        (await send(client, alice, conversation["id"], text))["reply"] for text in ("Hello!", "Fly us home")
    ]
    await until(lambda: _balance_below(fleet, alice, before, replies))
    spent = before - fleet.balance(alice)
    stored = [
        raw async for raw in messages.find({"conversation_id": conversation["id"], "role": "assistant"})
    ]
    prompt_tokens = sum(r["generation"]["usage"]["prompt_tokens"] for r in stored if r.get("generation"))
    completion_tokens = sum(
        r["generation"]["usage"]["completion_tokens"] for r in stored if r.get("generation")
    )

    response = await client.get(ME, headers=alice.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["to"] == today() and len(body["days"]) == 30
    assert body["from"] == (datetime.now(UTC).date() - timedelta(days=29)).isoformat()
    expected = {
        "messages": 4,
        "user_messages": 2,
        "replies": 2,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "credits_spent": spent,
    }
    assert body["totals"] == expected
    assert completion_tokens == sum(r["generation"]["usage"]["completion_tokens"] for r in replies) > 0
    assert spent == sum(r["generation"]["cost"] for r in replies) > 0
    [day] = [d for d in body["days"] if d["messages"]]
    assert day == {"day": today(), **expected}


async def _balance_below(fleet: Fleet, user: FleetUser, before: int, replies: list[dict[str, Any]]) -> bool:
    return before - fleet.balance(user) == sum(r["generation"]["cost"] for r in replies)


async def test_the_owner_sees_two_users_talking_to_a_public_character(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, bob: FleetUser
) -> None:
    character = fleet.character(alice, visibility="public")
    for user in (alice, bob):
        conversation = fleet.conversation(user, character["id"])
        await send(client, user, conversation["id"], "Hello, captain")

    response = await client.get(f"/api/v1/analytics/characters/{character['id']}", headers=alice.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    totals = body["totals"]
    assert body["character_id"] == character["id"]
    assert (totals["conversations"], totals["messages"], totals["unique_users"]) == (2, 4, 2)
    assert totals["avg_latency_ms"] > 0 and totals["avg_first_token_ms"] > 0
    assert totals["avg_first_token_ms"] <= totals["avg_latency_ms"]
    [day] = [d for d in body["days"] if d["messages"]]
    assert day["day"] == today()
    assert (day["conversations"], day["messages"], day["unique_users"]) == (2, 4, 2)


async def test_another_user_gets_404_for_character_analytics_whatever_the_visibility(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, bob: FleetUser
) -> None:
    public = fleet.character(alice, visibility="public")
    private = fleet.character(alice, visibility="private")
    paths = [
        f"/api/v1/analytics/characters/{public['id']}",
        f"/api/v1/analytics/characters/{private['id']}",
        "/api/v1/analytics/characters/00000000-0000-4000-8000-000000000000",
        "/api/v1/analytics/characters/not-a-uuid",
    ]

    responses = [await client.get(path, headers=bob.headers) for path in paths]

    assert [r.status_code for r in responses] == [404] * 4, [r.text for r in responses]
    assert {r.json()["error"]["code"] for r in responses} == {"character_not_found"}


async def test_the_overview_is_for_admins_only(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, user_service: ServiceProcess
) -> None:
    character = fleet.character(alice)
    conversation = fleet.conversation(alice, character["id"])
    await send(client, alice, conversation["id"], "Hello")
    admin = {"Authorization": f"Bearer {login(user_service.url, ADMIN['username'], ADMIN['password'])}"}

    as_user = await client.get("/api/v1/analytics/overview", headers=alice.headers)
    as_admin = await client.get("/api/v1/analytics/overview", headers=admin)
    admin_reads_character = await client.get(f"/api/v1/analytics/characters/{character['id']}", headers=admin)

    assert as_user.status_code == 403, as_user.text
    assert as_admin.status_code == 200, as_admin.text
    body = as_admin.json()
    assert body["totals"]["messages"] >= 2 and body["totals"]["unique_users"] >= 1
    assert body["totals"]["characters"] >= 1 and body["totals"]["conversations"] >= 1
    [day] = [d for d in body["days"] if d["day"] == today()]
    assert day["active_users"] >= 1 and day["replies"] >= 1
    assert body["top_characters"] and body["top_characters"][0]["messages"] >= 2
    assert admin_reads_character.status_code == 200, admin_reads_character.text
    assert admin_reads_character.json()["totals"]["messages"] == 2


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2026-13-01"},
        {"to": "2026-02-30"},
        {"from": "20260101"},
        {"to": "yesterday"},
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"from": "2025-01-01", "to": "2026-01-02"},  # 367 days
        {"from": "2026-01-01T00:00:00"},
    ],
)
async def test_a_bad_day_range_is_422(
    client: httpx.AsyncClient, alice: FleetUser, query: dict[str, str]
) -> None:
    response = await client.get(ME, params=query, headers=alice.headers)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


async def test_a_range_of_366_days_is_served_day_by_day(client: httpx.AsyncClient, alice: FleetUser) -> None:
    response = await client.get(ME, params={"from": "2024-01-01", "to": "2024-12-31"}, headers=alice.headers)

    assert response.status_code == 200, response.text
    days = response.json()["days"]
    assert len(days) == 366 and days[0]["day"] == "2024-01-01" and days[-1]["day"] == "2024-12-31"
    assert str(date(2024, 2, 29)) in {d["day"] for d in days}


async def test_a_deleted_conversation_is_404_at_once_then_purged_once_and_no_longer_counted(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    settings: Settings,
    redis_url: str,
    messages: AsyncCollection[dict[str, Any]],
) -> None:
    kept = fleet.conversation(alice)
    doomed = fleet.conversation(alice)
    await send(client, alice, kept["id"], "Stay")
    exchange = await send(client, alice, doomed["id"], "Go")
    reply_id = exchange["reply"]["id"]
    assert await messages.count_documents({"conversation_id": doomed["id"]}) == 4  # greetings included
    counted = (await client.get(ME, headers=alice.headers)).json()["totals"]["messages"]
    assert counted == 4

    fleet.delete_conversation(alice, doomed["id"])
    listed = await client.get(f"/api/v1/conversations/{doomed['id']}/messages", headers=alice.headers)
    siblings = await client.get(f"/api/v1/messages/{reply_id}/siblings", headers=alice.headers)

    assert (listed.status_code, siblings.status_code) == (404, 404), (listed.text, siblings.text)

    async def purged() -> bool:
        return await messages.count_documents({"conversation_id": doomed["id"]}) == 0

    await until(purged)
    assert await messages.count_documents({"conversation_id": kept["id"]}) == 4
    redis = Redis.from_url(redis_url)
    try:
        cursor = await redis.get(f"{settings.redis_prefix}:sweep:deleted-cursor")
    finally:
        await redis.aclose()
    assert cursor is not None and doomed["id"] in cursor.decode()
    after = (await client.get(ME, headers=alice.headers)).json()["totals"]
    assert (after["messages"], after["user_messages"], after["replies"]) == (2, 1, 1)

    # The cursor moved past the deletion: a message stored for it afterwards is not purged again.
    stray = await messages.insert_one({"conversation_id": doomed["id"], "role": "user", "day": today()})
    await asyncio.sleep(settings.sweep_interval_seconds * 4)
    assert await messages.count_documents({"conversation_id": doomed["id"]}) == 1
    await messages.delete_one({"_id": stray.inserted_id})


async def test_a_reply_generating_when_its_conversation_is_purged_ends_and_gives_the_credits_back(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    messages: AsyncCollection[dict[str, Any]],
) -> None:
    standin.configure(first_token_delay=3)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    sending = asyncio.ensure_future(
        client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": "Tell me a long story", "max_tokens": 64, "stream": True},
            headers=alice.headers,
        )
    )

    async def generating() -> bool:
        return (
            await messages.find_one({"conversation_id": conversation["id"], "status": "generating"})
            is not None
        )

    await until(generating)
    fleet.delete_conversation(alice, conversation["id"])
    response = await asyncio.wait_for(sending, 20)

    assert await messages.count_documents({"conversation_id": conversation["id"]}) == 0
    events = sse_events(response.text)
    assert events[-1][1] == "error" and events[-1][2]["code"] == "conversation_deleted", events[-1]
    await until(lambda: _balance_is(fleet, alice, before))
    assert [e["kind"] for e in fleet.ledger(alice)][:2] == ["released", "reservation"]


async def _balance_is(fleet: Fleet, user: FleetUser, balance: int) -> bool:
    return fleet.balance(user) == balance


async def test_the_default_range_stops_at_the_first_day_of_the_calendar(
    client: httpx.AsyncClient, alice: FleetUser
) -> None:
    response = await client.get(ME, params={"to": "0001-01-05"}, headers=alice.headers)

    assert response.status_code == 200, response.text
    assert [d["day"] for d in response.json()["days"]][0] == "0001-01-01"
