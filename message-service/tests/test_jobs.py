"""Generation jobs outlive the request that started them: a client that leaves does not stop or lose
a reply, it reattaches with Last-Event-ID; a stop keeps the generated part; a dead process's job is
failed by the sweeper of another and its credits given back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from chat_common.testing import ServiceProcess, serve_service
from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import DATABASE, Fleet
from tests.test_chat import sse_events

Event = tuple[str, str, dict[str, Any]]
SERVICE_DIR = Path(__file__).resolve().parents[1]
LONG = " ".join(f"word{n}" for n in range(40))  # the stand-in echoes it: about 45 tokens


async def iter_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The SSE events of `response` as they arrive."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text.replace("\r\n", "\n")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for event in sse_events(block + "\n\n"):
                yield event


async def read_events(response: httpx.Response, *, until: int | None = None) -> list[Event]:
    """The SSE events of `response`; with `until`, stop reading after that many `delta` events."""
    events: list[Event] = []
    async for event in iter_events(response):
        events.append(event)
        if until is not None and sum(1 for e in events if e[1] == "delta") >= until:
            break
    return events


async def reply_of(client: httpx.AsyncClient, user: FleetUser, reply_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/messages/{reply_id}/siblings", headers=user.headers)
    assert response.status_code == 200, response.text
    return next(m for m in response.json() if m["id"] == reply_id)


async def wait_for_status(
    client: httpx.AsyncClient, user: FleetUser, reply_id: str, *, within: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        reply = await reply_of(client, user, reply_id)
        if reply["status"] != "generating":
            return reply
        assert time.monotonic() < deadline, f"reply {reply_id} still generating"
        await asyncio.sleep(0.1)


async def wait_until(condition: Any, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def reply_ledger(fleet: Fleet, user: FleetUser, reply_id: str) -> list[dict[str, Any]]:
    """The ledger rows of the reservation made for `reply_id`."""
    rows = fleet.ledger(user)
    reservations = {r["reservation_id"] for r in rows if reply_id in (r.get("reference") or "")}
    return [r for r in rows if r["reservation_id"] in reservations]


def deltas(events: list[Event]) -> str:
    return "".join(data["text"] for _, name, data in events if name == "delta")


async def start_streamed(
    client: httpx.AsyncClient, user: FleetUser, conversation_id: str, content: str, *, until: int
) -> tuple[str, list[Event]]:
    """Send `content` streamed, read `until` deltas, then leave (the connection closes)."""
    async with client.stream(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": content, "stream": True},
        headers=user.headers,
    ) as response:
        assert response.status_code == 200
        events = await read_events(response, until=until)
    assert events[0][1] == "message.created"
    return str(events[0][2]["reply_id"]), events


async def test_a_client_that_leaves_mid_stream_gets_a_reply_completed_stored_and_charged_once(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess, settings: Settings
) -> None:
    standin.configure(tokens_per_second=40)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    reply_id, seen = await start_streamed(client, alice, conversation["id"], LONG, until=3)

    reply = await wait_for_status(client, alice, reply_id)
    assert reply["status"] == "completed"
    assert reply["content"] == f"You said: {LONG}" and reply["content"].startswith(deltas(seen))
    tokens = reply["generation"]["usage"]["completion_tokens"]
    cost = settings.cost_per_message + -(-tokens * settings.cost_per_1k_tokens // 1000)
    assert reply["generation"]["cost"] == cost
    await wait_until(lambda: fleet.balance(alice) == before - cost)
    rows = reply_ledger(fleet, alice, reply_id)
    assert len([r for r in rows if r["amount"] < 0]) == 1, rows  # one debit: charged once
    assert sum(r["amount"] for r in rows) == -cost
    await asyncio.sleep(1)  # the sweeper's rounds charge nothing more
    assert fleet.balance(alice) == before - cost


async def test_reattaching_with_last_event_id_gives_exactly_the_missing_events(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    standin.configure(tokens_per_second=40)
    conversation = fleet.conversation(alice)
    reply_id, seen = await start_streamed(client, alice, conversation["id"], LONG, until=3)
    last = seen[-1][0]

    async with client.stream(
        "GET", f"/api/v1/messages/{reply_id}/stream", headers={**alice.headers, "Last-Event-ID": last}
    ) as response:
        assert response.status_code == 200
        rest = await read_events(response)

    ids = [ident for ident, _, _ in seen + rest]
    assert len(ids) == len(set(ids))  # no event twice
    assert all(_stream_id(ident) > _stream_id(last) for ident, _, _ in rest)
    assert rest[-1][1] == "message.completed"
    assert deltas(seen) + deltas(rest) == rest[-1][2]["content"] == f"You said: {LONG}"


async def test_reattaching_to_a_finished_reply_replays_it_and_completes(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages", json={"content": LONG}, headers=alice.headers
    )
    reply = sent.json()["reply"]

    whole = sse_events(
        (await client.get(f"/api/v1/messages/{reply['id']}/stream", headers=alice.headers)).text
    )
    middle = whole[len(whole) // 2][0]
    after = await client.get(
        f"/api/v1/messages/{reply['id']}/stream", headers={**alice.headers, "Last-Event-ID": middle}
    )

    assert whole[-1][1] == "message.completed" and deltas(whole) == reply["content"]
    rest = sse_events(after.text)
    assert [e[0] for e in rest] == [e[0] for e in whole[len(whole) // 2 + 1 :]]
    assert rest[-1][1] == "message.completed"


async def test_a_finished_reply_whose_events_expired_replays_from_storage_at_once(
    fleet: Fleet, alice: FleetUser, extra_app: Any
) -> None:
    url, _ = extra_app(stream_retention_seconds=1)
    conversation = fleet.conversation(alice)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        sent = await http.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": "Hi"},
            headers=alice.headers,
        )
        reply = sent.json()["reply"]
        live = sse_events(
            (await http.get(f"/api/v1/messages/{reply['id']}/stream", headers=alice.headers)).text
        )
        await asyncio.sleep(1.5)  # its Redis stream expires

        started = time.monotonic()
        replayed = sse_events(
            (await http.get(f"/api/v1/messages/{reply['id']}/stream", headers=alice.headers)).text
        )
        resumed = sse_events(
            (
                await http.get(
                    f"/api/v1/messages/{reply['id']}/stream",
                    headers={**alice.headers, "Last-Event-ID": live[1][0]},  # from the expired stream
                )
            ).text
        )
        took = time.monotonic() - started

    assert deltas(replayed) == reply["content"] and replayed[-1][1] == "message.completed"
    assert resumed and resumed[-1][1] == "message.completed"
    assert resumed[-1][2]["content"] == reply["content"]
    assert took < 5  # not after a blocking read's timeout


async def test_a_stream_waiting_longer_than_the_redis_socket_timeout_still_completes(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    standin.configure(first_token_delay=6)  # the Redis client's socket timeout is 5 s
    conversation = fleet.conversation(alice)

    response = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Take your time", "stream": True},
        headers=alice.headers,
    )

    events = sse_events(response.text)
    assert events[-1][1] == "message.completed"
    assert deltas(events) == events[-1][2]["content"] == "You said: Take your time"


async def test_stop_keeps_the_partial_reply_as_stopped_and_charges_only_its_tokens(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess, settings: Settings
) -> None:
    standin.configure(tokens_per_second=20)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    reply_id, _ = await start_streamed(client, alice, conversation["id"], LONG, until=3)

    stopped = await client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)

    assert stopped.status_code == 202, stopped.text
    reply = await wait_for_status(client, alice, reply_id)
    assert reply["status"] == "stopped"
    assert reply["generation"]["finish_reason"] == "stop_requested"
    assert reply["content"] and f"You said: {LONG}".startswith(reply["content"])
    assert reply["content"] != f"You said: {LONG}"
    tokens = reply["generation"]["usage"]["completion_tokens"]
    assert 3 <= tokens < 45
    cost = settings.cost_per_message + -(-tokens * settings.cost_per_1k_tokens // 1000)
    assert reply["generation"]["cost"] == cost
    await wait_until(lambda: fleet.balance(alice) == before - cost)
    again = await client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
    assert again.status_code == 409


async def test_stop_before_the_first_token_ends_the_reply_at_once_and_charges_nothing(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    standin.configure(first_token_delay=10)  # a long prompt processing
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    async with client.stream(
        "POST",
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": LONG, "stream": True},
        headers=alice.headers,
    ) as response:
        events = iter_events(response)
        created = await anext(events)
        assert created[1] == "message.created"
        reply_id = created[2]["reply_id"]
        assert (await reply_of(client, alice, reply_id))["status"] == "generating"
        started = time.monotonic()
        stopped = await client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
        rest = [event async for event in events]

    assert stopped.status_code == 202
    assert rest[-1][1] == "message.completed" and rest[-1][2]["status"] == "stopped"
    assert time.monotonic() - started < 5
    reply = await reply_of(client, alice, reply_id)
    assert reply["status"] == "stopped" and reply["content"] == "" and reply["generation"]["cost"] == 0
    await wait_until(lambda: fleet.balance(alice) == before)


@pytest.fixture
def killable_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """message-service's environment as a process sharing the in-process app's database and Redis."""
    return {
        "ENVIRONMENT": "test",
        "JSON_LOGS": "false",
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DATABASE": DATABASE,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "JWKS_URL": settings.jwks_url or "",
        "USER_SERVICE_URL": settings.user_service_url,
        "CHARACTER_SERVICE_URL": settings.character_service_url,
        "CONVERSATION_SERVICE_URL": settings.conversation_service_url,
        "LLM_SERVICE_URL": settings.llm_service_url,
        "CONVERSATION_CACHE_SECONDS": "0",
        "MESSAGES_PER_MINUTE": "1000",
        "JOB_LEASE_SECONDS": "2",
        "SWEEP_INTERVAL_SECONDS": "0.5",
    }


async def test_a_job_whose_process_is_killed_is_failed_and_its_credits_released(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    killable_env: dict[str, str],
    tmp_path: Path,
) -> None:
    standin.configure(tokens_per_second=5)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    with serve_service(SERVICE_DIR, killable_env, log_path=tmp_path / "ms.log") as doomed:
        async with httpx.AsyncClient(base_url=doomed.url, timeout=30) as http:
            reply_id, _ = await start_streamed(http, alice, conversation["id"], LONG, until=2)
            assert fleet.balance(alice) < before  # reserved
            _kill(doomed)

    reply = await wait_for_status(client, alice, reply_id, within=20)

    assert reply["status"] == "failed"
    assert reply["generation"]["error_code"] == "generation_lost"
    await wait_until(lambda: fleet.balance(alice) == before)
    listed = await client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)
    user_message = listed.json()["items"][-2]
    assert user_message["role"] == "user" and user_message["content"] == LONG
    events = sse_events((await client.get(f"/api/v1/messages/{reply_id}/stream", headers=alice.headers)).text)
    assert events[-1][1] == "error" and events[-1][2]["code"] == "generation_lost"
    again = await client.post(  # the conversation is free again
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Still there?"},
        headers=alice.headers,
    )
    assert again.status_code == 201, again.text


async def test_a_job_whose_process_shuts_down_is_failed_and_released_at_once_not_at_lease_expiry(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    killable_env: dict[str, str],
    tmp_path: Path,
) -> None:
    standin.configure(tokens_per_second=5)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    env = {**killable_env, "JOB_LEASE_SECONDS": "60"}
    with serve_service(SERVICE_DIR, env, log_path=tmp_path / "ms.log") as stopping:
        async with httpx.AsyncClient(base_url=stopping.url, timeout=30) as http:
            reply_id, _ = await start_streamed(http, alice, conversation["id"], LONG, until=2)
        started = time.monotonic()
        stopping.process.send_signal(signal.SIGTERM)
        stopping.process.wait(20)

    reply = await wait_for_status(client, alice, reply_id, within=5)

    assert time.monotonic() - started < 20  # long before its 60 s lease would have expired
    assert reply["status"] == "failed" and reply["generation"]["error_code"] == "generation_lost"
    assert reply["generation"]["cost"] == 0
    await wait_until(lambda: fleet.balance(alice) == before)
    again = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Still there?"},
        headers=alice.headers,
    )
    assert again.status_code == 201, again.text


def _kill(service: ServiceProcess) -> None:
    os.kill(service.process.pid, signal.SIGKILL)
    service.process.wait(10)


def _stream_id(ident: str) -> tuple[int, int]:
    millis, _, seq = ident.partition("-")
    return int(millis), int(seq or 0)


async def test_a_client_that_has_a_replys_end_can_send_again_at_once(
    app: Any, client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conversation's lock is free before the reply's end is told: a client that sends as soon as
    it reads `message.completed` is never refused with 409 (the soak run saw about 1 in 1,000)."""
    conversation = fleet.conversation(alice)
    live = app.state.runtime.live
    lock_key = live._key("generating", conversation["id"])
    held_at_end: list[bool] = []
    publish_end = live.publish_end

    async def observed(reply_id: str, name: str, data: dict[str, Any], retain_seconds: int) -> None:
        held_at_end.append(bool(await live.redis.exists(lock_key)))
        await publish_end(reply_id, name, data, retain_seconds)

    monkeypatch.setattr(live, "publish_end", observed)
    for turn in range(3):
        async with client.stream(
            "POST",
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": f"turn {turn}", "stream": True},
            headers=alice.headers,
        ) as response:
            assert response.status_code == 200, await response.aread()
            events = await read_events(response)
        assert events[-1][1] == "message.completed"
    assert held_at_end == [False, False, False]
