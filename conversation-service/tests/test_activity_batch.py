"""The batch activity route message-service flushes its follow-ups through: many conversations at once,
each message counted once however the batches are retried or raced, and times that never move back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from chat_common.testing.fleet import FleetUser

BATCH = "/api/v1/internal/conversations/activity"


def _ms(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _item(conversation: dict[str, Any] | str, ids: list[str], at: datetime) -> dict[str, Any]:
    conversation_id = conversation if isinstance(conversation, str) else conversation["id"]
    return {"conversation_id": conversation_id, "message_ids": ids, "at": at.isoformat()}


async def _read(client: httpx.AsyncClient, conversation: dict[str, Any], headers: dict[str, str]) -> Any:
    response = await client.get(f"/api/v1/internal/conversations/{conversation['id']}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_batch_counts_the_messages_of_several_conversations_and_moves_their_times(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    first, second = await start_conversation(alice), await start_conversation(alice)
    at = datetime.now(UTC)
    later = at + timedelta(milliseconds=5)

    opening = await client.post(
        BATCH,
        json={"items": [_item(first, ["u1", "r1"], at), _item(second, ["u2", "r2"], at)]},
        headers=writer_headers,
    )
    following = await client.post(
        BATCH, json={"items": [_item(first, ["u3", "r3"], later)]}, headers=writer_headers
    )
    read_first, read_second = (
        await _read(client, first, reader_headers),
        await _read(client, second, reader_headers),
    )

    assert opening.status_code == 200, opening.text
    assert opening.json()["items"] == [
        {"conversation_id": first["id"], "status": "recorded", "counted_message_ids": ["u1", "r1"]},
        {"conversation_id": second["id"], "status": "recorded", "counted_message_ids": ["u2", "r2"]},
    ]
    assert following.json()["items"][0]["counted_message_ids"] == ["u3", "r3"]
    assert read_first["message_count"] == 4 and read_second["message_count"] == 2
    assert datetime.fromisoformat(read_first["last_message_at"]) == _ms(later)
    assert datetime.fromisoformat(read_first["last_activity_at"]) == _ms(later)
    assert datetime.fromisoformat(read_second["last_message_at"]) == _ms(at)


async def test_concurrent_duplicate_batches_count_each_message_once(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    conversations = [await start_conversation(alice) for _ in range(3)]
    at = datetime.now(UTC)
    # Each conversation has had a message already, so the batches race on the one-update path too.
    await client.post(
        BATCH, json={"items": [_item(c, ["m0"], at) for c in conversations]}, headers=writer_headers
    )
    batch = {"items": [_item(c, ["m1", "m2"], at + timedelta(seconds=1)) for c in conversations]}

    responses = await asyncio.gather(
        *(client.post(BATCH, json=batch, headers=writer_headers) for _ in range(10))
    )

    assert [r.status_code for r in responses] == [200] * 10
    for index, conversation in enumerate(conversations):
        counted = [id_ for r in responses for id_ in r.json()["items"][index]["counted_message_ids"]]
        assert sorted(counted) == ["m1", "m2"]
        assert (await _read(client, conversation, reader_headers))["message_count"] == 3


async def test_concurrent_batches_with_distinct_ids_and_times_count_all_and_keep_the_newest_time(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    base = datetime.now(UTC) - timedelta(minutes=1)
    times = [base + timedelta(seconds=(i * 7) % 20) for i in range(20)]

    responses = await asyncio.gather(
        *(
            client.post(
                BATCH, json={"items": [_item(conversation, [f"u{i}", f"r{i}"], at)]}, headers=writer_headers
            )
            for i, at in enumerate(times)
        )
    )
    read = await _read(client, conversation, reader_headers)

    assert [r.status_code for r in responses] == [200] * 20
    assert read["message_count"] == 40
    assert datetime.fromisoformat(read["last_message_at"]) == _ms(max(times))


async def test_a_batch_retried_with_some_ids_counted_counts_only_the_others(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    at = datetime.now(UTC)
    single = f"/api/v1/internal/conversations/{conversation['id']}/activity"
    await client.post(single, json={"message_id": "m1", "at": at.isoformat()}, headers=writer_headers)

    mixed = await client.post(
        BATCH, json={"items": [_item(conversation, ["m1", "m2", "m3", "m2"], at)]}, headers=writer_headers
    )
    again = await client.post(
        BATCH, json={"items": [_item(conversation, ["m3", "m2"], at)]}, headers=writer_headers
    )
    read = await _read(client, conversation, reader_headers)

    assert mixed.json()["items"][0] == {
        "conversation_id": conversation["id"],
        "status": "recorded",
        "counted_message_ids": ["m2", "m3"],
    }
    assert again.json()["items"][0]["counted_message_ids"] == []
    assert again.json()["items"][0]["status"] == "recorded"
    assert read["message_count"] == 3


async def test_deleted_and_unknown_conversations_are_reported_and_the_others_still_counted(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    live, doomed = await start_conversation(alice), await start_conversation(alice)
    await client.delete(f"/api/v1/conversations/{doomed['id']}", headers=alice.headers)
    at = datetime.now(UTC)

    response = await client.post(
        BATCH,
        json={
            "items": [
                _item(doomed, ["d1"], at),
                _item("0123456789abcdef01234567", ["x1"], at),
                _item("not-an-object-id", ["x2"], at),
                _item(live, ["l1"], at),
            ]
        },
        headers=writer_headers,
    )

    assert response.status_code == 200, response.text
    assert [(i["status"], i["counted_message_ids"]) for i in response.json()["items"]] == [
        ("deleted", []),
        ("not_found", []),
        ("not_found", []),
        ("recorded", ["l1"]),
    ]
    assert (await _read(client, doomed, reader_headers))["message_count"] == 0
    assert (await _read(client, live, reader_headers))["message_count"] == 1


async def test_an_older_batch_counts_but_never_moves_the_times_back_and_a_future_one_stops_at_now(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    older, newer = (
        await start_conversation(alice, title="older"),
        await start_conversation(alice, title="newer"),
    )
    recent = datetime.now(UTC)
    await client.post(BATCH, json={"items": [_item(older, ["m2"], recent)]}, headers=writer_headers)

    late = await client.post(
        BATCH, json={"items": [_item(older, ["m1"], recent - timedelta(hours=1))]}, headers=writer_headers
    )
    future = await client.post(
        BATCH,
        json={"items": [_item(newer, ["n1"], datetime(9999, 1, 1, tzinfo=UTC))]},
        headers=writer_headers,
    )
    read_older, read_newer = (
        await _read(client, older, reader_headers),
        await _read(client, newer, reader_headers),
    )

    assert late.json()["items"][0]["counted_message_ids"] == ["m1"]
    assert read_older["message_count"] == 2
    assert datetime.fromisoformat(read_older["last_message_at"]) == _ms(recent)
    assert datetime.fromisoformat(read_older["last_activity_at"]) == _ms(recent)
    assert future.json()["items"][0]["status"] == "recorded"
    assert datetime.fromisoformat(read_newer["last_message_at"]) < datetime.now(UTC) + timedelta(seconds=5)


def _valid_item() -> dict[str, Any]:
    return {
        "conversation_id": "0123456789abcdef01234567",
        "message_ids": ["m1"],
        "at": "2026-01-02T10:00:00Z",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [_valid_item()] * 2},  # one conversation twice
        {"items": [{**_valid_item(), "conversation_id": f"{i:024x}"} for i in range(101)]},
        {"items": [{**_valid_item(), "at": "2026-01-02T10:00:00"}]},
        {"items": [{**_valid_item(), "at": "1969-12-31T23:59:59Z"}]},
        {"items": [{**_valid_item(), "at": None}]},
        {"items": [{k: v for k, v in _valid_item().items() if k != "at"}]},
        {"items": [{**_valid_item(), "message_ids": []}]},
        {"items": [{**_valid_item(), "message_ids": [f"m{i}" for i in range(201)]}]},
        {"items": [{**_valid_item(), "message_ids": ["$where"]}]},
        {"items": [{**_valid_item(), "message_ids": [{"$gt": ""}]}]},
        {"items": [{**_valid_item(), "conversation_id": ""}]},
        {"items": [{**_valid_item(), "extra": 1}]},
        {"items": [_valid_item()], "extra": 1},
        {},
    ],
    ids=[
        "no-items",
        "duplicate-conversation",
        "too-many-items",
        "naive-at",
        "before-1970",
        "null-at",
        "missing-at",
        "no-message-ids",
        "too-many-message-ids",
        "bad-message-id",
        "operator-message-id",
        "empty-conversation-id",
        "unknown-item-field",
        "unknown-field",
        "empty-body",
    ],
)
async def test_a_malformed_batch_is_422_and_counts_nothing(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
    body: dict[str, Any],
) -> None:
    conversation = await start_conversation(alice)
    good = _item(conversation, ["ok"], datetime.now(UTC))
    with_good = {**body, "items": [good, *body["items"]]} if body.get("items") else body

    response = await client.post(BATCH, json=with_good, headers=writer_headers)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert (await _read(client, conversation, reader_headers))["message_count"] == 0


async def test_the_batch_route_refuses_users_and_services_without_the_write_scope(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    reader_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    body = {"items": [_item(conversation, ["m1"], datetime.now(UTC))]}

    as_user = await client.post(BATCH, json=body, headers=alice.headers)
    as_reader = await client.post(BATCH, json=body, headers=reader_headers)
    anonymous = await client.post(BATCH, json=body)

    assert (as_user.status_code, as_reader.status_code, anonymous.status_code) == (403, 403, 401)
    assert (await _read(client, conversation, reader_headers))["message_count"] == 0
