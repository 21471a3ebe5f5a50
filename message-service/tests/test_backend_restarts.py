"""Redis or MongoDB killed (SIGKILL) under a running message-service and started again on the same port
and data: a 503 naming it while it is away, not ready, alive; the service answering again by itself
within seconds of its return; a reply generating meanwhile ends stored, complete and paid once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from chat_common.testing import ServiceProcess, serve_app
from chat_common.testing.fleet import FleetUser
from chat_common.testing.outages import RestartableServer, restartable_server, seconds_until
from lmstudio_client.testing import StandinProcess
from tests.conftest import Fleet, make_settings
from tests.test_jobs import LONG, iter_events, reply_ledger, wait_for_status, wait_until

RECOVERY_SECONDS = 15  # a generous bound on a loaded machine; measured in about a second
FULL_REPLY = f"You said: {LONG}"  # the stand-in echoes the message


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    with restartable_server("redis", tmp_path_factory.mktemp("restartable-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def mongodb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    with restartable_server("mongodb", tmp_path_factory.mktemp("restartable-mongodb")) as server:
        yield server


async def send(http: httpx.AsyncClient, user: FleetUser, conversation_id: str) -> httpx.Response:
    return await http.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": LONG, "stream": False},
        headers=user.headers,
    )


def assert_names(response: httpx.Response, service: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "dependency_unavailable" and error["details"] == {"service": service}
    assert "127.0.0.1" not in response.text  # the driver's text stays in the log


def assert_charged_once(fleet: Fleet, user: FleetUser, reply: dict[str, Any]) -> None:
    rows = reply_ledger(fleet, user, reply["id"])
    assert len([r for r in rows if r["amount"] < 0]) == 1, rows  # one debit
    assert sum(r["amount"] for r in rows) == -reply["generation"]["cost"] < 0


async def _sent(http: httpx.AsyncClient, user: FleetUser, conversation_id: str) -> bool:
    return (await send(http, user, conversation_id)).status_code == 201


async def test_redis_killed_a_send_is_a_503_naming_it_and_sends_work_again_when_it_restarts(
    fleet: Fleet, alice: FleetUser, extra_app: Any, redis: RestartableServer
) -> None:
    url, _ = extra_app(redis_url=redis.url)
    conversation = fleet.conversation(alice)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        first = await send(http, alice, conversation["id"])
        assert first.status_code == 201, first.text
        before = fleet.balance(alice)

        redis.kill()
        started = time.monotonic()
        refused = await send(http, alice, conversation["id"])
        waited = time.monotonic() - started
        listed = await http.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)
        ready, health = await http.get("/ready"), await http.get("/health")

        assert_names(refused, "redis")
        assert waited < 10
        assert listed.status_code == 200  # what does not need Redis still works
        assert ready.status_code == 503 and ready.json()["checks"] == {"redis": "error", "mongodb": "ok"}
        assert health.status_code == 200
        assert fleet.balance(alice) == before  # nothing reserved for the refused send

        redis.start()
        recovery = await seconds_until(
            lambda: _sent(http, alice, conversation["id"]), within=RECOVERY_SECONDS
        )
        print(f"message-service sends recovered {recovery:.2f}s after Redis restarted")

        # The reply of before the kill is still streamed whole (from Redis's file or from MongoDB).
        reply_id = first.json()["reply"]["id"]
        async with http.stream("GET", f"/api/v1/messages/{reply_id}/stream", headers=alice.headers) as stream:
            events = [event async for event in iter_events(stream)]
        assert (await http.get("/ready")).status_code == 200
    assert events[-1][1] == "message.completed" and events[-1][2]["content"] == FULL_REPLY


async def test_redis_killed_stored_history_is_still_read_with_the_conversation_cache_on(
    fleet: Fleet, alice: FleetUser, extra_app: Any, redis: RestartableServer
) -> None:
    """The conversation and character caches are caches: with Redis away they miss, and what needs no
    Redis (the stored messages, a message, its siblings) is still read from conversation-service and
    MongoDB, not refused with a 503."""
    url, _ = extra_app(redis_url=redis.url, conversation_cache_seconds=60)
    conversation = fleet.conversation(alice)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        first = await send(http, alice, conversation["id"])  # the conversation is cached now
        assert first.status_code == 201, first.text
        reply_id = first.json()["reply"]["id"]
        redis.kill()
        try:
            listed = await http.get(
                f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers
            )
            reply = await http.get(f"/api/v1/messages/{reply_id}", headers=alice.headers)
            siblings = await http.get(f"/api/v1/messages/{reply_id}/siblings", headers=alice.headers)
            refused = await send(http, alice, conversation["id"])
        finally:
            redis.start()
    assert listed.status_code == 200, listed.text
    assert [m["content"] for m in listed.json()["items"]][-2:] == [LONG, FULL_REPLY]
    assert reply.status_code == 200 and reply.json()["content"] == FULL_REPLY
    assert siblings.status_code == 200 and [m["id"] for m in siblings.json()] == [reply_id]
    assert_names(refused, "redis")  # a send needs its locks and limits


async def test_redis_killed_mid_generation_the_reply_completes_whole_and_is_paid_once(
    fleet: Fleet, alice: FleetUser, extra_app: Any, redis: RestartableServer, standin: StandinProcess
) -> None:
    """The job keeps the text and stores it in MongoDB: Redis carries it only to readers, so the reader
    that lost Redis is told the reply's end from MongoDB, with the whole text."""
    url, _ = extra_app(redis_url=redis.url)
    standin.configure(tokens_per_second=10)  # about 5 s of generation
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async with http.stream(
            "POST",
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": LONG, "stream": True},
            headers=alice.headers,
        ) as response:
            assert response.status_code == 200
            events = []
            async for event in iter_events(response):
                events.append(event)
                if [name for _, name, _ in events].count("delta") == 2:
                    redis.kill()  # and kept away until the reply has ended
        reply = await wait_for_status(http, alice, events[0][2]["reply_id"])
        assert events[-1][1] == "message.completed"
        assert events[-1][2]["content"] == reply["content"] == FULL_REPLY
        assert reply["status"] == "completed"
        await wait_until(lambda: fleet.balance(alice) == before - reply["generation"]["cost"])
        assert_charged_once(fleet, alice, reply)

        standin.configure(tokens_per_second=0)  # the time to recovery, not to a slow reply
        redis.start()
        after = await seconds_until(lambda: _sent(http, alice, conversation["id"]), within=RECOVERY_SECONDS)
        print(f"message-service sends recovered {after:.2f}s after Redis restarted")


async def test_mongodb_killed_a_send_is_a_503_naming_it_charges_nothing_and_sends_work_again(
    fleet: Fleet, alice: FleetUser, extra_app: Any, mongodb: RestartableServer
) -> None:
    url, _ = extra_app(mongodb_url=mongodb.url, mongodb_timeout_seconds=2)
    conversation = fleet.conversation(alice)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        first = await send(http, alice, conversation["id"])
        assert first.status_code == 201, first.text
        before = fleet.balance(alice)

        mongodb.kill()
        started = time.monotonic()
        refused = await send(http, alice, conversation["id"])
        listed = await http.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)
        waited = time.monotonic() - started
        ready, health = await http.get("/ready"), await http.get("/health")

        assert_names(refused, "mongodb")
        assert_names(listed, "mongodb")
        assert waited < 20  # MONGODB_TIMEOUT_SECONDS (2 s here) a request, not the driver's 30 s
        assert ready.status_code == 503 and ready.json()["checks"] == {"redis": "ok", "mongodb": "error"}
        assert health.status_code == 200

        mongodb.start()
        recovery = await seconds_until(
            lambda: _sent(http, alice, conversation["id"]), within=RECOVERY_SECONDS
        )
        print(f"message-service sends recovered {recovery:.2f}s after MongoDB restarted")
        listed = await http.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)

    # Kept: the exchange of before the kill and the one after; nothing of the refused send.
    contents = [m["content"] for m in listed.json()["items"] if m["role"] != "system"]
    assert contents[-4:] == [LONG, FULL_REPLY, LONG, FULL_REPLY] and contents.count(LONG) == 2
    second = listed.json()["items"][-1]
    await wait_until(lambda: fleet.balance(alice) == before - second["generation"]["cost"])


async def test_mongodb_killed_mid_generation_the_reply_is_stored_whole_when_it_returns(
    fleet: Fleet,
    alice: FleetUser,
    extra_app: Any,
    mongodb: RestartableServer,
    standin: StandinProcess,
) -> None:
    """The reply ends while MongoDB is away: its job keeps the text and stores it once MongoDB is back
    (within its lease), then settles its credits once."""
    url, _ = extra_app(mongodb_url=mongodb.url, mongodb_timeout_seconds=2)
    standin.configure(tokens_per_second=20)  # about 2.5 s of generation
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async with http.stream(
            "POST",
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": LONG, "stream": True},
            headers=alice.headers,
        ) as response:
            assert response.status_code == 200
            events = []
            async for event in iter_events(response):
                events.append(event)
                if [name for _, name, _ in events].count("delta") == 2:
                    mongodb.kill()
                    await asyncio.sleep(4)  # the generation ends meanwhile
                    mongodb.start()
        reply = await wait_for_status(http, alice, events[0][2]["reply_id"], within=30)

    assert events[-1][1] == "message.completed" and events[-1][2]["content"] == FULL_REPLY
    assert reply["status"] == "completed" and reply["content"] == FULL_REPLY
    await wait_until(lambda: fleet.balance(alice) == before - reply["generation"]["cost"])
    assert_charged_once(fleet, alice, reply)


async def test_the_conversation_cache_poller_survives_a_redis_outage_and_reads_the_feed_again(
    mongodb_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    conversation_service: ServiceProcess,
    llm_service: ServiceProcess,
    redis: RestartableServer,
) -> None:
    """The changes-feed poller fails while Redis is away (the cache is not trusted meanwhile) and
    applies the feed again by itself once Redis is back."""
    settings = make_settings(
        mongodb_url,
        redis.url,
        user_service,
        character_service,
        conversation_service,
        llm_service,
        conversation_cache_seconds=60,
        conversation_changes_poll_seconds=0.2,
    )
    app = create_app(settings)
    with serve_app(app):
        cursor = app.state.runtime.conversation_changes
        await seconds_until(lambda: _true(cursor.read_at is not None), within=RECOVERY_SECONDS)

        redis.kill()
        await seconds_until(lambda: _true(cursor.failing), within=RECOVERY_SECONDS)
        redis.start()
        restarted = time.monotonic()
        seconds = await seconds_until(
            lambda: _true(not cursor.failing and (cursor.read_at or 0) > restarted), within=RECOVERY_SECONDS
        )
    print(f"message-service's conversation-cache poller resumed {seconds:.2f}s after Redis restarted")


async def _true(value: bool) -> bool:
    return value
