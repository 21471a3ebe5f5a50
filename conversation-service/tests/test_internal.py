"""The internal routes message-service uses: read, activity (idempotent per message), deleted and
changes feeds."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from chat_common.testing.fleet import FleetUser


async def test_a_service_reads_any_conversation_with_its_snapshots_and_deleted_flag(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, reader_headers: dict[str, str]
) -> None:
    conversation = await start_conversation(alice, title="Secret plans")
    path = f"/api/v1/internal/conversations/{conversation['id']}"

    live = await client.get(path, headers=reader_headers)
    await client.delete(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)
    deleted = await client.get(path, headers=reader_headers)

    assert live.status_code == 200
    assert live.json()["user_id"] == alice.id and live.json()["deleted"] is False
    assert live.json()["character"] == conversation["character"]
    assert live.json()["persona"] == conversation["persona"]
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] is True and deleted.json()["deleted_at"] is not None


async def test_internal_routes_refuse_users_and_services_without_the_scope(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    reader_headers: dict[str, str],
    writer_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    read = f"/api/v1/internal/conversations/{conversation['id']}"
    activity = f"{read}/activity"

    responses = {
        "user reads": await client.get(read, headers=alice.headers),
        "user lists deleted": await client.get(
            "/api/v1/internal/conversations/deleted", headers=alice.headers
        ),
        "user lists changed": await client.get(
            "/api/v1/internal/conversations/changed", params={"since": 0}, headers=alice.headers
        ),
        "user records": await client.post(activity, json={"message_id": "m1"}, headers=alice.headers),
        "writer reads": await client.get(read, headers=writer_headers),
        "reader records": await client.post(activity, json={"message_id": "m1"}, headers=reader_headers),
        "anonymous": await client.get(read),
    }

    assert {name: r.status_code for name, r in responses.items()} == {
        "user reads": 403,
        "user lists deleted": 403,
        "user lists changed": 403,
        "user records": 403,
        "writer reads": 403,
        "reader records": 403,
        "anonymous": 401,
    }


async def test_a_hundred_concurrent_activities_with_distinct_message_ids_count_exactly(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, writer_headers: dict[str, str]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}/activity"

    responses = await asyncio.gather(
        *(client.post(path, json={"message_id": f"msg-{i}"}, headers=writer_headers) for i in range(100))
    )
    mine = await client.get(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)

    assert [r.status_code for r in responses] == [200] * 100
    assert all(r.json()["counted"] for r in responses)
    assert mine.json()["message_count"] == 100
    assert mine.json()["last_message_at"] is not None


async def test_the_same_message_id_counts_once_even_when_sent_at_once(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, writer_headers: dict[str, str]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}/activity"

    responses = await asyncio.gather(
        *(client.post(path, json={"message_id": "reply-1"}, headers=writer_headers) for _ in range(10))
    )
    again = await client.post(path, json={"message_id": "reply-1"}, headers=writer_headers)

    assert sorted(r.json()["counted"] for r in responses) == [False] * 9 + [True]
    assert again.json() | {"last_message_at": None} == {
        "conversation_id": conversation["id"],
        "message_count": 1,
        "last_message_at": None,
        "counted": False,
    }


async def test_activity_moves_the_conversation_to_the_top_and_never_back_in_time(
    app: FastAPI,
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
) -> None:
    older = await start_conversation(alice, title="older")
    await start_conversation(alice, title="newer")
    path = f"/api/v1/internal/conversations/{older['id']}/activity"
    later = datetime.now(UTC) + timedelta(minutes=5)
    app.state.clock.advance(600)  # `later` is in the service's past: activity never moves past now

    await client.post(path, json={"message_id": "m2", "at": later.isoformat()}, headers=writer_headers)
    await client.post(
        path,
        json={"message_id": "m1", "at": (later - timedelta(hours=1)).isoformat()},
        headers=writer_headers,
    )
    listed = (await client.get("/api/v1/conversations", headers=alice.headers)).json()["items"]

    assert [c["title"] for c in listed] == ["older", "newer"]
    assert datetime.fromisoformat(listed[0]["last_message_at"]) == later.replace(
        microsecond=later.microsecond // 1000 * 1000
    )
    assert listed[0]["message_count"] == 2


async def test_activity_of_an_unknown_conversation_is_404_and_bad_message_ids_are_422(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, writer_headers: dict[str, str]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}/activity"

    unknown = await client.post(
        "/api/v1/internal/conversations/0123456789abcdef01234567/activity",
        json={"message_id": "m1"},
        headers=writer_headers,
    )
    not_an_id = await client.post(
        "/api/v1/internal/conversations/not-an-id/activity", json={"message_id": "m1"}, headers=writer_headers
    )
    bad = [
        await client.post(path, json={"message_id": value}, headers=writer_headers)
        for value in ("", "x" * 65, "a b", "$where", {"$gt": ""}, None)
    ]

    assert unknown.status_code == 404 and not_an_id.status_code == 404
    assert [r.status_code for r in bad] == [422] * 6


async def test_the_deleted_feed_lists_deletions_in_order_after_their_lag_with_a_cursor(
    app: FastAPI,
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    bob: FleetUser,
    reader_headers: dict[str, str],
) -> None:
    feed = "/api/v1/internal/conversations/deleted"

    async def read(since: str, limit: int = 100) -> dict:
        response = await client.get(feed, params={"since": since, "limit": limit}, headers=reader_headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    app.state.clock.advance(3)  # past the 2 s lag of every earlier deletion: skip them all
    cursor = ""
    while (page := await read(cursor))["items"]:
        cursor = page["next_cursor"]
    app.state.clock.advance(-3)
    first, second = await start_conversation(alice), await start_conversation(bob)
    kept = await start_conversation(alice)
    await client.delete(f"/api/v1/conversations/{first['id']}", headers=alice.headers)
    await client.delete(f"/api/v1/conversations/{second['id']}", headers=bob.headers)

    within_lag = await read(cursor)
    app.state.clock.advance(3)
    page1 = await read(cursor, limit=1)
    page2 = await read(page1["next_cursor"], limit=5)
    fresh = await start_conversation(alice)
    await client.delete(f"/api/v1/conversations/{fresh['id']}", headers=alice.headers)
    page3 = await read(page2["next_cursor"])
    app.state.clock.advance(3)
    later = await read(page2["next_cursor"])

    assert within_lag == {"items": [], "next_cursor": cursor}
    assert [item["id"] for item in page1["items"]] == [first["id"]]
    assert page1["items"][0]["user_id"] == alice.id
    assert page1["items"][0]["character_id"] == first["character_id"]
    assert [item["id"] for item in page2["items"]] == [second["id"]]
    assert page3 == {"items": [], "next_cursor": page2["next_cursor"]}
    assert [item["id"] for item in later["items"]] == [fresh["id"]]
    assert kept["id"] not in {item["id"] for item in page1["items"] + page2["items"] + later["items"]}


async def test_a_malformed_cursor_is_422(client: httpx.AsyncClient, reader_headers: dict[str, str]) -> None:
    for since in ("yesterday", "1" * 12, "1" * 13 + "-zz", "1" * 13 + "-" + "a" * 24 + "x", {"$gt": ""}):
        response = await client.get(
            "/api/v1/internal/conversations/deleted", params={"since": str(since)}, headers=reader_headers
        )
        assert response.status_code == 422, since
        assert response.json()["error"]["code"] == "validation_error"


async def test_a_service_reading_an_unknown_conversation_gets_404(
    client: httpx.AsyncClient, reader_headers: dict[str, str]
) -> None:
    for conversation_id in ("0123456789abcdef01234567", "nope", uuid.uuid4().hex):
        response = await client.get(
            f"/api/v1/internal/conversations/{conversation_id}", headers=reader_headers
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "conversation_not_found"


async def test_activity_at_without_a_timezone_is_422(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, writer_headers: dict[str, str]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}/activity"

    naive = await client.post(
        path, json={"message_id": "m1", "at": "2026-01-02T10:00:00"}, headers=writer_headers
    )
    read = await client.get(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)

    assert naive.status_code == 422 and naive.json()["error"]["code"] == "validation_error"
    assert read.json()["message_count"] == 0


async def test_activity_in_the_future_counts_as_now_so_it_cannot_pin_the_conversation_on_top(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, writer_headers: dict[str, str]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}/activity"

    future = await client.post(
        path, json={"message_id": "m1", "at": "9999-12-31T23:59:59Z"}, headers=writer_headers
    )
    after = datetime.now(UTC) + timedelta(seconds=5)

    assert future.status_code == 200
    assert datetime.fromisoformat(future.json()["last_message_at"]) < after


async def test_a_repeated_message_id_without_at_changes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}/activity"
    first = await client.post(path, json={"message_id": "m1"}, headers=writer_headers)
    app.state.clock.advance(3600)

    repeat = await client.post(path, json={"message_id": "m1"}, headers=writer_headers)

    assert repeat.json()["counted"] is False
    assert repeat.json()["last_message_at"] == first.json()["last_message_at"]


async def test_activity_on_a_deleted_conversation_is_409_and_counts_nothing(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}"
    await client.post(f"{path}/activity", json={"message_id": "m1"}, headers=writer_headers)
    await client.delete(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)

    fresh = await client.post(f"{path}/activity", json={"message_id": "m2"}, headers=writer_headers)
    repeat = await client.post(f"{path}/activity", json={"message_id": "m1"}, headers=writer_headers)
    read = await client.get(path, headers=reader_headers)

    assert [fresh.status_code, repeat.status_code] == [409, 409]
    assert fresh.json()["error"]["code"] == "conversation_deleted"
    assert read.json()["message_count"] == 1


async def test_activity_before_1970_is_422_and_the_conversation_stays_readable(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, writer_headers: dict[str, str]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/internal/conversations/{conversation['id']}/activity"

    # In UTC this is in year 0, which no datetime can hold: stored, it made every read a 500.
    ancient = await client.post(
        path, json={"message_id": "m1", "at": "0001-01-01T00:00:00+01:00"}, headers=writer_headers
    )
    read = await client.get(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)

    assert ancient.status_code == 422 and ancient.json()["error"]["code"] == "validation_error"
    assert read.status_code == 200 and read.json()["message_count"] == 0


async def _changed(client: httpx.AsyncClient, headers: dict[str, str], since: int, limit: int = 1000) -> dict:
    response = await client.get(
        "/api/v1/internal/conversations/changed", params={"since": since, "limit": limit}, headers=headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_changes_feed_names_conversations_changed_since_not_new_ones_or_those_talked_in(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    reader_headers: dict[str, str],
    writer_headers: dict[str, str],
) -> None:
    start = int(time.time() * 1000)
    talked, renamed, archived, refreshed, deleted = [await start_conversation(alice) for _ in range(5)]
    before = await _changed(client, reader_headers, start)
    await asyncio.sleep(0.01)  # every change below is stamped after `before["until"]`
    base = "/api/v1/conversations"

    activity = await client.post(
        f"/api/v1/internal/conversations/{talked['id']}/activity",
        json={"message_id": "m1"},
        headers=writer_headers,
    )
    changes = [
        await client.patch(f"{base}/{renamed['id']}", json={"title": "New"}, headers=alice.headers),
        await client.patch(f"{base}/{archived['id']}", json={"archived": True}, headers=alice.headers),
        await client.post(f"{base}/{refreshed['id']}/refresh-character", headers=alice.headers),
        await client.delete(f"{base}/{deleted['id']}", headers=alice.headers),
    ]
    new = await start_conversation(alice)  # new: cached nowhere yet, so not a change
    after = await _changed(client, reader_headers, before["until"])
    truncated = await _changed(client, reader_headers, before["until"], limit=2)
    later = await _changed(client, reader_headers, after["until"] + 1)

    assert activity.status_code == 200 and [r.status_code for r in changes] == [200, 200, 200, 204]
    expected = {renamed["id"], archived["id"], refreshed["id"], deleted["id"]}
    # only this test's conversations are looked at: the feed is every user's, and earlier tests that
    # moved the service's clock forward left changes stamped in what is still the future
    ours = expected | {talked["id"], new["id"]}
    assert set(before["ids"]) & ours == set() and before["complete"] is True
    assert set(after["ids"]) & ours == expected and after["complete"] is True
    assert after["until"] > before["until"]
    assert len(truncated["ids"]) == 2 and truncated["complete"] is False
    assert set(later["ids"]) & ours == set() and later["complete"] is True


async def test_the_changes_feed_refuses_a_missing_or_malformed_since(
    client: httpx.AsyncClient, reader_headers: dict[str, str]
) -> None:
    feed = "/api/v1/internal/conversations/changed"
    cases = [{}, {"since": "yesterday"}, {"since": -1}, {"since": 10**13}, {"since": 0, "limit": 0}]
    for params in cases:
        response = await client.get(feed, params=params, headers=reader_headers)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] == "validation_error"
