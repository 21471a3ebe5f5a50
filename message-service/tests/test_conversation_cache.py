"""The conversation cache: a send reads the conversation from Redis, not from conversation-service,
and whatever changes it there (delete, persona, refresh-character) reaches message-service within
about a poll of conversation-service's changes feed."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat_common.testing import ServiceProcess
from chat_common.testing.fleet import FleetUser, run_conversation_service
from tests.conftest import Fleet

POLL = 0.2
BOUND = 3.0  # seconds: a change must show well within this (the poll is POLL)
CACHED = {
    "conversation_cache_seconds": 60,
    "conversation_changes_poll_seconds": POLL,
    "conversation_changes_max_lag_seconds": 2.0,
    # The deleted feed's sweep forgets deleted conversations too: far apart, so only the changes feed can.
    "sweep_interval_seconds": 60,
}
READ_ROUTE = re.compile(
    r'^http_requests_total\{[^}]*handler="/api/v1/internal/conversations/\{conversation_id\}"'
    r'[^}]*method="GET"[^}]*\} (\S+)$',
    re.MULTILINE,
)


@pytest.fixture
async def other() -> AsyncIterator[httpx.AsyncClient]:
    """Calls to the other services, as the user makes them."""
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


@pytest.fixture
def cached_app(extra_app: Any) -> str:
    """A message-service that caches conversations and follows the changes feed every POLL."""
    url, _ = extra_app(**CACHED)
    return str(url)


async def _until(check: Callable[[], Awaitable[bool]], bound: float = BOUND) -> float:
    """Seconds until `check()` held (polled), failing past `bound`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < bound, f"not within {bound} s"
        await _pause()
    return time.monotonic() - started


async def _pause() -> None:
    await asyncio.sleep(0.05)


def _reads(conversation_service_url: str) -> float:
    """How many times conversation-service served a conversation by id (its /metrics)."""
    text = httpx.get(f"{conversation_service_url}/metrics", timeout=10).text
    return sum(float(value) for value in READ_ROUTE.findall(text))


async def _send(http: httpx.AsyncClient, owner: FleetUser, conversation_id: str) -> httpx.Response:
    return await http.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"content": "Hi"}, headers=owner.headers
    )


async def test_a_second_send_reads_the_conversation_from_the_cache_not_conversation_service(
    cached_app: str, fleet: Fleet, alice: FleetUser, conversation_service: ServiceProcess
) -> None:
    conversation = fleet.conversation(alice)
    async with httpx.AsyncClient(base_url=cached_app, timeout=60) as http:
        before = _reads(conversation_service.url)
        first = await _send(http, alice, conversation["id"])
        between = _reads(conversation_service.url)
        second = await _send(http, alice, conversation["id"])
        after = _reads(conversation_service.url)

    assert first.status_code == 201 and second.status_code == 201, second.text
    assert between - before >= 1  # the first send did read it there (and the metric counts that)
    assert after == between


async def test_a_conversation_in_use_stays_cached_past_its_lifetime_and_an_unused_one_expires(
    extra_app: Any, fleet: Fleet, alice: FleetUser, conversation_service: ServiceProcess
) -> None:
    url, _ = extra_app(**{**CACHED, "conversation_cache_seconds": 1.5})
    conversation = fleet.conversation(alice)
    prompt = f"/api/v1/conversations/{conversation['id']}/prompt"
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        statuses = [(await http.get(prompt, headers=alice.headers)).status_code]
        cached = _reads(conversation_service.url)
        for _ in range(6):  # 3 s of use, twice the lifetime
            await asyncio.sleep(0.5)
            statuses.append((await http.get(prompt, headers=alice.headers)).status_code)
        in_use = _reads(conversation_service.url)
        await asyncio.sleep(2.5)  # unused for longer than the lifetime
        statuses.append((await http.get(prompt, headers=alice.headers)).status_code)
        unused = _reads(conversation_service.url)

    assert statuses == [200] * 8
    assert in_use == cached
    assert unused == in_use + 1


async def test_a_conversation_deleted_at_conversation_service_is_404_to_a_send_within_a_poll(
    cached_app: str, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    prompt = f"/api/v1/conversations/{conversation['id']}/prompt"
    async with httpx.AsyncClient(base_url=cached_app, timeout=60) as http:
        sent = await _send(http, alice, conversation["id"])  # now cached
        fleet.delete_conversation(alice, conversation["id"])

        async def gone() -> bool:
            return (await http.get(prompt, headers=alice.headers)).status_code == 404

        waited = await _until(gone)
        refused = await _send(http, alice, conversation["id"])

    assert sent.status_code == 201
    assert waited < BOUND
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "conversation_not_found"


async def test_a_persona_chosen_at_conversation_service_is_in_the_next_prompt_within_a_poll(
    cached_app: str, fleet: Fleet, alice: FleetUser, other: httpx.AsyncClient
) -> None:
    conversation = fleet.conversation(alice)
    persona = await other.post(
        f"{fleet.users}/api/v1/users/me/personas",
        json={"name": "Captain Alex", "description": "Alex collects antique compasses."},
        headers=alice.headers,
    )
    assert persona.status_code == 201, persona.text
    prompt = f"/api/v1/conversations/{conversation['id']}/prompt"
    async with httpx.AsyncClient(base_url=cached_app, timeout=60) as http:
        before = await http.get(prompt, headers=alice.headers)  # now cached
        patched = await other.patch(
            f"{fleet.conversations}/api/v1/conversations/{conversation['id']}",
            json={"persona_id": persona.json()["id"]},
            headers=alice.headers,
        )

        async def shown() -> bool:
            return "antique compasses" in (await http.get(prompt, headers=alice.headers)).text

        waited = await _until(shown)
        after = await http.get(prompt, headers=alice.headers)

    assert before.status_code == 200 and "antique compasses" not in before.text
    assert patched.status_code == 200, patched.text
    assert waited < BOUND
    assert "Captain Alex" in json.dumps(after.json())


async def test_a_greeting_copied_by_refresh_character_is_the_first_message_within_a_poll(
    cached_app: str, fleet: Fleet, alice: FleetUser, other: httpx.AsyncClient
) -> None:
    character = fleet.character(alice, greeting="", alternate_greetings=[])
    conversation = fleet.conversation(alice, character["id"])
    listing = f"/api/v1/conversations/{conversation['id']}/messages"
    async with httpx.AsyncClient(base_url=cached_app, timeout=60) as http:
        before = await http.get(listing, headers=alice.headers)  # no greeting yet; now cached
        edited = await other.patch(
            f"{fleet.characters}/api/v1/characters/{character['id']}",
            json={"greeting": "Fair winds, {{user}}!"},
            headers=alice.headers,
        )
        refreshed = await other.post(
            f"{fleet.conversations}/api/v1/conversations/{conversation['id']}/refresh-character",
            headers=alice.headers,
        )

        async def greeted() -> bool:
            return bool((await http.get(listing, headers=alice.headers)).json()["items"])

        waited = await _until(greeted)
        after = await http.get(listing, headers=alice.headers)

    assert before.status_code == 200 and before.json()["items"] == []
    assert edited.status_code == 200 and refreshed.status_code == 200, refreshed.text
    assert waited < BOUND
    user = conversation["persona"]["name"]
    assert [m["content"] for m in after.json()["items"]] == [f"Fair winds, {user}!"]


async def test_with_conversation_service_down_cached_conversations_work_until_the_lag_and_others_are_503(
    extra_app: Any,
    fleet: Fleet,
    alice: FleetUser,
    other: httpx.AsyncClient,
    mongodb_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    data_dir: Path,
) -> None:
    with run_conversation_service(mongodb_url, user_service.url, character_service.url, data_dir) as own:
        url, _ = extra_app(conversation_service_url=own.url, **CACHED)
        started = []
        for _ in range(2):
            created = await other.post(
                f"{own.url}/api/v1/conversations",
                json={"character_id": fleet.character(alice)["id"]},
                headers=alice.headers,
            )
            assert created.status_code == 201, created.text
            started.append(created.json()["id"])
        cached, uncached = started
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            first = await _send(http, alice, cached)
            own.stop()
            down_at = time.monotonic()
            still = await _send(http, alice, cached)
            refused = await _send(http, alice, uncached)
            answered_within_lag = time.monotonic() - down_at < CACHED["conversation_changes_max_lag_seconds"]

            async def distrusted() -> bool:
                return (
                    await http.get(f"/api/v1/conversations/{cached}/prompt", headers=alice.headers)
                ).status_code == 503

            await _until(distrusted, bound=CACHED["conversation_changes_max_lag_seconds"] + BOUND)

    assert first.status_code == 201, first.text
    assert answered_within_lag
    assert still.status_code == 201, still.text
    assert refused.status_code == 503
    assert refused.json()["error"]["details"]["service"] == "conversation-service"
