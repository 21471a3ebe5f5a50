"""Talking with a character through the real fleet: plain and streamed replies, paid exactly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from app.config import Settings
from chat_common.testing.fleet import FleetUser
from tests.conftest import Fleet


def sse_events(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event in `text`."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            if name in ("id", "event", "data"):
                fields[name] = fields.get(name, "") + value.removeprefix(" ")
        if "event" in fields:
            events.append((fields.get("id", ""), fields["event"], json.loads(fields.get("data") or "null")))
    return events


async def test_the_first_read_shows_the_greeting_with_its_alternates_as_siblings(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/messages"

    reads = await asyncio.gather(*(client.get(path, headers=alice.headers) for _ in range(8)))

    assert all(r.status_code == 200 for r in reads), reads[0].text
    [greeting] = reads[0].json()["items"]
    welcome = f"Welcome aboard, {conversation['persona']['name']}!"  # the names filled in
    assert greeting["role"] == "assistant" and greeting["content"] == welcome
    assert (greeting["sibling_index"], greeting["sibling_count"]) == (0, 2)
    assert {r.json()["items"][0]["id"] for r in reads} == {greeting["id"]}  # created once
    siblings = await client.get(f"/api/v1/messages/{greeting['id']}/siblings", headers=alice.headers)
    assert [s["content"] for s in siblings.json()] == [welcome, "Ahoy!"]


async def test_a_plain_send_stores_both_messages_and_charges_the_cost(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, settings: Settings
) -> None:
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    response = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!", "max_tokens": 64},
        headers=alice.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    reply = body["reply"]
    assert body["user_message"]["content"] == "Hello, captain!"
    assert reply["status"] == "completed" and reply["content"]
    assert reply["parent_id"] == body["user_message"]["id"]
    tokens = reply["generation"]["usage"]["completion_tokens"]
    expected = settings.cost_per_message + -(-tokens * settings.cost_per_1k_tokens // 1000)
    assert reply["generation"]["cost"] == expected
    await _settled(fleet, alice, before - expected)
    listed = await client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)
    assert [m["role"] for m in listed.json()["items"]] == ["assistant", "user", "assistant"]
    await _until(lambda: fleet.read_conversation(alice, conversation["id"])["message_count"] == 2)


async def test_a_streamed_send_sends_the_text_that_is_stored(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)

    response = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Tell me about the sky", "stream": True},
        headers=alice.headers,
    )

    assert response.status_code == 200, response.text
    events = sse_events(response.text)
    names = [name for _, name, _ in events]
    assert names[0] == "message.created" and names[-1] == "message.completed"
    streamed = "".join(data["text"] for _, name, data in events if name == "delta")
    completed = events[-1][2]
    assert streamed == completed["content"] and streamed
    stored = await client.get(f"/api/v1/messages/{completed['id']}/siblings", headers=alice.headers)
    assert stored.json()[0]["content"] == streamed


async def test_another_user_reaches_nothing_of_a_conversation(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, bob: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages", json={"content": "Hi"}, headers=alice.headers
    )
    reply_id = sent.json()["reply"]["id"]
    user_message_id = sent.json()["user_message"]["id"]
    base = f"/api/v1/conversations/{conversation['id']}"

    responses = [
        await client.get(f"{base}/messages", headers=bob.headers),
        await client.post(f"{base}/messages", json={"content": "mine"}, headers=bob.headers),
        await client.get(f"{base}/prompt", headers=bob.headers),
        await client.post(f"{base}/impersonate", json={}, headers=bob.headers),
        await client.get(f"/api/v1/messages/{reply_id}/siblings", headers=bob.headers),
        await client.get(f"/api/v1/messages/{reply_id}/stream", headers=bob.headers),
        await client.post(f"/api/v1/messages/{reply_id}/regenerate", json={}, headers=bob.headers),
        await client.post(f"/api/v1/messages/{reply_id}/continue", json={}, headers=bob.headers),
        await client.post(f"/api/v1/messages/{reply_id}/select", headers=bob.headers),
        await client.post(f"/api/v1/messages/{reply_id}/stop", headers=bob.headers),
        await client.patch(f"/api/v1/messages/{user_message_id}", json={"content": "x"}, headers=bob.headers),
        await client.delete(f"/api/v1/messages/{reply_id}", headers=bob.headers),
    ]

    assert [r.status_code for r in responses] == [404] * len(responses), [r.text for r in responses]


async def _settled(fleet: Fleet, user: FleetUser, balance: int) -> None:
    await _until(lambda: fleet.balance(user) == balance)


async def _until(condition: Any) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met within 10 s")


async def test_an_empty_model_for_the_next_prompt_is_422_like_for_a_send(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    """`GET /prompt?model=` was a 500 (found by the schema fuzzer): the query's model is held to the
    send's rule, at least one character, and named in a 422."""
    conversation = fleet.conversation(alice)
    prompt = f"/api/v1/conversations/{conversation['id']}/prompt"

    empty = await client.get(prompt, params={"model": "", "content": "Hi"}, headers=alice.headers)

    assert empty.status_code == 422, empty.text
    assert empty.json()["error"]["details"][0]["loc"] == ["query", "model"]
    named = await client.get(prompt, params={"model": "lmstudio-standin/echo-7b"}, headers=alice.headers)
    assert named.status_code == 200, named.text
