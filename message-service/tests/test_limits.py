"""Limits on sending: credits (402, nothing stored, never below zero, nothing left held), one reply at
a time per conversation (409), messages a minute and replies generating at once per user (429)."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from typing import Any

import httpx

from app.config import Settings
from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import Fleet
from tests.test_jobs import LONG, read_events, wait_until


def reserved_per_send(settings: Settings, max_tokens: int) -> int:
    return settings.cost_per_message + math.ceil(max_tokens * settings.cost_per_1k_tokens / 1000)


async def start_slow_reply(url: str, user: FleetUser, conversation_id: str) -> tuple[str, Any]:
    """A streamed send read up to its first piece; the caller closes the returned stream."""
    http = httpx.AsyncClient(base_url=url, timeout=60)
    request = http.build_request(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": LONG, "stream": True},
        headers=user.headers,
    )
    response = await http.send(request, stream=True)
    assert response.status_code == 200, (await response.aread()).decode()
    events = await read_events(response, until=1)

    async def close() -> None:
        await response.aclose()
        await http.aclose()

    return str(events[0][2]["reply_id"]), close


async def test_twenty_concurrent_sends_with_credits_for_five_give_five_replies_and_fifteen_402s(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, settings: Settings
) -> None:
    max_tokens = 64
    per_send = reserved_per_send(settings, max_tokens)
    character = fleet.character(alice)
    conversations = [fleet.conversation(alice, character["id"]) for _ in range(20)]
    for conversation in conversations:  # the greeting is stored on the first read
        await client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)
    fleet.set_balance(alice, 5 * per_send)
    started_at = len(fleet.ledger(alice))

    responses = await asyncio.gather(
        *(
            client.post(
                f"/api/v1/conversations/{conversation['id']}/messages",
                json={"content": "Hi", "max_tokens": max_tokens},
                headers=alice.headers,
            )
            for conversation in conversations
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [402] * 15, [r.text for r in responses if r.status_code not in (201, 402)]
    assert all(r.json()["error"]["code"] == "insufficient_credits" for r in responses if r.status_code == 402)
    costs = sum(r.json()["reply"]["generation"]["cost"] for r in responses if r.status_code == 201)
    for conversation, response in zip(conversations, responses, strict=True):
        listed = await client.get(
            f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers
        )
        roles = [m["role"] for m in listed.json()["items"]]
        assert roles == (["assistant", "user", "assistant"] if response.status_code == 201 else ["assistant"])
    await wait_until(lambda: fleet.balance(alice) == 5 * per_send - costs)
    rows = fleet.ledger(alice)[: len(fleet.ledger(alice)) - started_at]  # newest first: this test's rows
    assert all(r["balance_after"] >= 0 for r in rows)
    by_reservation: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["reservation_id"]:
            by_reservation[row["reservation_id"]].append(row)
    assert len(by_reservation) == 5  # one reservation a reply, none for a refused send
    statuses = [fleet.reservation(rid)["status"] for rid in by_reservation]
    assert statuses == ["committed"] * 5  # none left held


async def test_a_second_send_while_a_reply_is_generating_in_the_conversation_is_409(
    base_url: str, client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    standin.configure(tokens_per_second=20)
    conversation = fleet.conversation(alice)
    reply_id, close = await start_slow_reply(base_url, alice, conversation["id"])
    try:
        second = await client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": "And another thing"},
            headers=alice.headers,
        )
        regenerate = await client.post(
            f"/api/v1/messages/{reply_id}/regenerate", json={}, headers=alice.headers
        )
    finally:
        await close()

    assert second.status_code == 409 and second.json()["error"]["code"] == "generation_in_progress"
    assert regenerate.status_code == 409
    await client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
    listed = await client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)
    assert [m["content"] for m in listed.json()["items"] if m["role"] == "user"] == [LONG]  # not stored


async def test_more_messages_a_minute_than_allowed_is_429_with_retry_after_and_rate_limit_headers(
    fleet: Fleet, alice: FleetUser, extra_app: Any
) -> None:
    url, _ = extra_app(messages_per_minute=2)
    conversation = fleet.conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        sent = [await http.post(path, json={"content": f"Hi {n}"}, headers=alice.headers) for n in range(3)]
        listed = await http.get(path, headers=alice.headers)

    first, second, refused = sent
    assert [first.status_code, second.status_code] == [201, 201]
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "2" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > 0
    assert [m["content"] for m in listed.json()["items"] if m["role"] == "user"] == ["Hi 0", "Hi 1"]


async def test_more_replies_generating_at_once_than_allowed_is_429_too_many_generations(
    fleet: Fleet, alice: FleetUser, standin: StandinProcess, extra_app: Any
) -> None:
    standin.configure(tokens_per_second=20)
    url, _ = extra_app(max_concurrent_generations=1)
    first, other = fleet.conversation(alice), fleet.conversation(alice)
    before = fleet.balance(alice)
    reply_id, close = await start_slow_reply(url, alice, first["id"])
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            refused = await http.post(
                f"/api/v1/conversations/{other['id']}/messages", json={"content": "Hi"}, headers=alice.headers
            )
            await http.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
            listed = await http.get(f"/api/v1/conversations/{other['id']}/messages", headers=alice.headers)
    finally:
        await close()

    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_generations"
    assert "Retry-After" in refused.headers
    assert [m["role"] for m in listed.json()["items"]] == ["assistant"]  # only the greeting
    await wait_until(lambda: fleet.balance(alice) < before)  # the stopped one paid, the refused one not


async def test_an_impersonation_takes_a_place_among_the_users_running_generations(
    fleet: Fleet, alice: FleetUser, standin: StandinProcess, extra_app: Any
) -> None:
    standin.configure(tokens_per_second=20)
    url, _ = extra_app(max_concurrent_generations=1)
    first, other = fleet.conversation(alice), fleet.conversation(alice)
    reply_id, close = await start_slow_reply(url, alice, first["id"])
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            refused = await http.post(
                f"/api/v1/conversations/{other['id']}/impersonate", json={}, headers=alice.headers
            )
            await http.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
            # read to its end (a stop is 202: the job ends just after), as a client learns it stopped
            await http.get(f"/api/v1/messages/{reply_id}/stream", headers=alice.headers)
    finally:
        await close()
    standin.configure(tokens_per_second=0)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        after = await http.post(
            f"/api/v1/conversations/{other['id']}/impersonate", json={"max_tokens": 8}, headers=alice.headers
        )
        again = await http.post(
            f"/api/v1/conversations/{other['id']}/impersonate", json={"max_tokens": 8}, headers=alice.headers
        )

    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_generations"
    assert after.status_code == 200, after.text  # the place is free once the reply stopped
    assert again.status_code == 200, again.text  # and an impersonation frees its own
