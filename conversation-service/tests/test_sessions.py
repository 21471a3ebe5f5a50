"""Chat sessions: one active per conversation, heartbeats, ending, idle expiry and summed time,
against the real fleet with the service's clock moved forward."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from chat_common.testing.fleet import FleetUser

IDLE = 1800  # the default SESSION_IDLE_TIMEOUT


@pytest.fixture
def clock(app: FastAPI) -> Iterator[Any]:
    """The service's clock, put back where it was after the test."""
    saved = app.state.clock.offset
    yield app.state.clock
    app.state.clock.offset = saved


@pytest.fixture
def start_session(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    async def factory(owner: FleetUser, conversation_id: str, expected: int = 201) -> dict[str, Any]:
        response = await client.post(
            f"/api/v1/conversations/{conversation_id}/sessions", headers=owner.headers
        )
        assert response.status_code == expected, response.text
        return dict(response.json())

    return factory


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _sessions(client: httpx.AsyncClient, owner: FleetUser, conversation_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/conversations/{conversation_id}/sessions", headers=owner.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_starting_a_session_returns_it_active_and_starting_again_returns_the_same(
    alice: FleetUser, start_conversation, start_session
) -> None:
    conversation = await start_conversation(alice)

    first = await start_session(alice, conversation["id"], expected=201)
    again = await start_session(alice, conversation["id"], expected=200)

    assert first["conversation_id"] == conversation["id"]
    assert first["status"] == "active" and first["ended_at"] is None and first["end_reason"] is None
    assert first["started_at"] == first["last_activity_at"]
    assert again["id"] == first["id"] and again["status"] == "active"


async def test_twenty_concurrent_starts_give_one_active_session(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation
) -> None:
    conversation = await start_conversation(alice)
    url = f"/api/v1/conversations/{conversation['id']}/sessions"

    responses = await asyncio.gather(*(client.post(url, headers=alice.headers) for _ in range(20)))

    assert sorted(r.status_code for r in responses) == [200] * 19 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await _sessions(client, alice, conversation["id"])
    assert listed["total"] == 1


async def test_concurrent_starts_after_an_idle_out_give_one_new_session(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    old = await start_session(alice, conversation["id"])
    clock.advance(IDLE + 1)
    url = f"/api/v1/conversations/{conversation['id']}/sessions"

    responses = await asyncio.gather(*(client.post(url, headers=alice.headers) for _ in range(20)))

    assert sorted(r.status_code for r in responses) == [200] * 19 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses} | {old["id"]}) == 2
    listed = await _sessions(client, alice, conversation["id"])
    assert [item["status"] for item in listed["items"]] == ["active", "ended"]
    assert listed["items"][1]["end_reason"] == "idle"


async def test_an_idle_session_reads_ended_at_its_last_activity(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])
    clock.advance(600)
    beat = await client.post(f"/api/v1/sessions/{session['id']}/heartbeat", headers=alice.headers)
    assert beat.status_code == 200, beat.text

    clock.advance(IDLE + 1)
    listed = await _sessions(client, alice, conversation["id"])

    [idle] = listed["items"]
    assert idle["status"] == "ended" and idle["end_reason"] == "idle"
    assert idle["ended_at"] == beat.json()["last_activity_at"] == idle["last_activity_at"]
    assert idle["duration_seconds"] == pytest.approx(600, abs=1)
    assert listed["total_seconds"] == idle["duration_seconds"]


async def test_heartbeats_keep_a_session_active_past_the_idle_timeout(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])

    for _ in range(3):
        clock.advance(IDLE - 60)
        beat = await client.post(f"/api/v1/sessions/{session['id']}/heartbeat", headers=alice.headers)
        assert beat.status_code == 200, beat.text

    body = beat.json()
    assert body["status"] == "active" and body["ended_at"] is None
    assert body["duration_seconds"] == pytest.approx(3 * (IDLE - 60), abs=1)
    assert (await start_session(alice, conversation["id"], expected=200))["id"] == session["id"]


async def test_a_heartbeat_after_the_idle_timeout_is_409_session_ended(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])
    clock.advance(IDLE + 1)

    response = await client.post(f"/api/v1/sessions/{session['id']}/heartbeat", headers=alice.headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_ended"


async def test_a_heartbeat_after_ending_is_409_session_ended(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])
    await client.post(f"/api/v1/sessions/{session['id']}/end", headers=alice.headers)

    response = await client.post(f"/api/v1/sessions/{session['id']}/heartbeat", headers=alice.headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_ended"


async def test_starting_after_an_idle_out_gives_a_new_session_and_the_old_reads_idle(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    old = await start_session(alice, conversation["id"])
    clock.advance(IDLE + 5)

    new = await start_session(alice, conversation["id"], expected=201)

    assert new["id"] != old["id"] and new["status"] == "active"
    listed = await _sessions(client, alice, conversation["id"])
    assert [item["id"] for item in listed["items"]] == [new["id"], old["id"]]
    stored_old = listed["items"][1]
    assert stored_old["status"] == "ended" and stored_old["end_reason"] == "idle"
    assert stored_old["ended_at"] == old["last_activity_at"] and stored_old["duration_seconds"] == 0


async def test_ending_a_session_is_idempotent(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])
    clock.advance(120)

    ended = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=alice.headers)
    clock.advance(300)
    again = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=alice.headers)

    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["status"] == "ended" and body["end_reason"] == "ended"
    assert body["duration_seconds"] == pytest.approx(120, abs=1)
    assert again.status_code == 200 and again.json() == body
    assert (await start_session(alice, conversation["id"], expected=201))["id"] != session["id"]


async def test_ending_an_idled_out_session_records_its_last_activity_as_the_end(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])
    clock.advance(IDLE + 60)

    response = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=alice.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ended" and body["end_reason"] == "idle"
    assert body["ended_at"] == session["last_activity_at"] and body["duration_seconds"] == 0


async def test_the_listing_is_newest_first_paged_and_sums_the_time_of_every_session(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session, clock
) -> None:
    conversation = await start_conversation(alice)
    first = await start_session(alice, conversation["id"])
    clock.advance(100)
    await client.post(f"/api/v1/sessions/{first['id']}/end", headers=alice.headers)
    second = await start_session(alice, conversation["id"])
    clock.advance(50)
    await client.post(f"/api/v1/sessions/{second['id']}/heartbeat", headers=alice.headers)
    clock.advance(IDLE + 10)  # the second idles out after 50 s
    third = await start_session(alice, conversation["id"])
    clock.advance(30)  # the third is active for 30 s so far

    page = await client.get(
        f"/api/v1/conversations/{conversation['id']}/sessions",
        params={"limit": 2, "offset": 0},
        headers=alice.headers,
    )

    assert page.status_code == 200, page.text
    body = page.json()
    assert [item["id"] for item in body["items"]] == [third["id"], second["id"]]
    assert body["total"] == 3 and body["limit"] == 2 and body["offset"] == 0
    assert body["items"][0]["status"] == "active"
    assert body["items"][0]["duration_seconds"] == pytest.approx(30, abs=1)
    assert body["total_seconds"] == pytest.approx(100 + 50 + 30, abs=1)


async def test_another_users_sessions_and_conversation_are_404_on_every_route(
    client: httpx.AsyncClient, alice: FleetUser, bob: FleetUser, start_conversation, start_session
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])

    start = await client.post(f"/api/v1/conversations/{conversation['id']}/sessions", headers=bob.headers)
    listed = await client.get(f"/api/v1/conversations/{conversation['id']}/sessions", headers=bob.headers)
    beat = await client.post(f"/api/v1/sessions/{session['id']}/heartbeat", headers=bob.headers)
    end = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=bob.headers)

    for response, code in ((start, "conversation_not_found"), (listed, "conversation_not_found")):
        assert response.status_code == 404 and response.json()["error"]["code"] == code
    for response in (beat, end):
        assert response.status_code == 404 and response.json()["error"]["code"] == "session_not_found"
    assert (await _sessions(client, alice, conversation["id"]))["items"][0]["status"] == "active"


async def test_a_deleted_conversations_sessions_are_404(
    client: httpx.AsyncClient, alice: FleetUser, start_conversation, start_session
) -> None:
    conversation = await start_conversation(alice)
    session = await start_session(alice, conversation["id"])
    deleted = await client.delete(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)
    assert deleted.status_code == 204

    start = await client.post(f"/api/v1/conversations/{conversation['id']}/sessions", headers=alice.headers)
    listed = await client.get(f"/api/v1/conversations/{conversation['id']}/sessions", headers=alice.headers)
    beat = await client.post(f"/api/v1/sessions/{session['id']}/heartbeat", headers=alice.headers)
    end = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=alice.headers)

    assert start.status_code == listed.status_code == beat.status_code == end.status_code == 404
    assert beat.json()["error"]["code"] == end.json()["error"]["code"] == "session_not_found"


@pytest.mark.parametrize("bad_id", ["not-an-id", "123", "0" * 25])
async def test_ids_that_are_not_object_ids_are_404(
    client: httpx.AsyncClient, alice: FleetUser, bad_id: str
) -> None:
    start = await client.post(f"/api/v1/conversations/{bad_id}/sessions", headers=alice.headers)
    listed = await client.get(f"/api/v1/conversations/{bad_id}/sessions", headers=alice.headers)
    beat = await client.post(f"/api/v1/sessions/{bad_id}/heartbeat", headers=alice.headers)
    end = await client.post(f"/api/v1/sessions/{bad_id}/end", headers=alice.headers)

    assert start.json()["error"]["code"] == listed.json()["error"]["code"] == "conversation_not_found"
    assert beat.json()["error"]["code"] == end.json()["error"]["code"] == "session_not_found"
    assert start.status_code == listed.status_code == beat.status_code == end.status_code == 404
