"""Messages deleted at message-service: each counted one leaves `message_count` exactly once, however the
call is retried or raced with the activity calls, and a deleted message id is never counted again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from chat_common.testing.fleet import FleetUser
from tests.test_activity_batch import _read

BATCH = "/api/v1/internal/conversations/activity"


def _paths(conversation: dict[str, Any]) -> tuple[str, str]:
    base = f"/api/v1/internal/conversations/{conversation['id']}"
    return f"{base}/deleted-messages", f"{base}/activity"


async def _count(client: httpx.AsyncClient, conversation: dict[str, Any], headers: dict[str, str]) -> int:
    return int((await _read(client, conversation, headers))["message_count"])


async def test_deleting_counted_messages_lowers_the_count_once_however_often_it_is_told(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    deleted, activity = _paths(conversation)
    for message_id in ("u1", "r1", "u2", "r2"):
        await client.post(activity, json={"message_id": message_id}, headers=writer_headers)

    first = await client.post(deleted, json={"message_ids": ["u2", "r2"]}, headers=writer_headers)
    again = await client.post(deleted, json={"message_ids": ["r2", "u2", "r2"]}, headers=writer_headers)
    overlapping = await client.post(deleted, json={"message_ids": ["r1", "r2"]}, headers=writer_headers)

    assert first.status_code == 200, first.text
    assert first.json() == {
        "conversation_id": conversation["id"],
        "message_count": 2,
        "uncounted_message_ids": ["u2", "r2"],
    }
    assert again.json()["message_count"] == 2 and again.json()["uncounted_message_ids"] == []
    assert overlapping.json()["message_count"] == 1
    assert overlapping.json()["uncounted_message_ids"] == ["r1"]
    mine = await client.get(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)
    assert mine.json()["message_count"] == 1
    assert "uncounted_message_ids" not in mine.json() and "counted_message_ids" not in mine.json()


async def test_a_late_activity_of_a_deleted_message_counts_nothing_single_or_batched(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    """A reply deleted before its follow-ups reached conversation-service: the delete is told first, the
    activity retried after; the message must not be counted (it is not stored any more)."""
    conversation = await start_conversation(alice)
    deleted, activity = _paths(conversation)
    await client.post(activity, json={"message_id": "u1"}, headers=writer_headers)

    told = await client.post(deleted, json={"message_ids": ["r1"]}, headers=writer_headers)
    single = await client.post(activity, json={"message_id": "r1"}, headers=writer_headers)
    now = datetime.now(UTC).isoformat()
    batch = await client.post(
        BATCH,
        json={"items": [{"conversation_id": conversation["id"], "message_ids": ["u2", "r1"], "at": now}]},
        headers=writer_headers,
    )

    assert told.json()["uncounted_message_ids"] == [] and told.json()["message_count"] == 1
    assert single.json()["counted"] is False
    assert batch.json()["items"][0]["counted_message_ids"] == ["u2"]
    assert await _count(client, conversation, reader_headers) == 2  # u1 and u2


async def test_deletes_raced_with_activities_of_the_same_ids_end_with_none_of_them_counted(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    deleted, activity = _paths(conversation)
    await client.post(activity, json={"message_id": "kept"}, headers=writer_headers)
    ids = [f"m{i}" for i in range(20)]

    await asyncio.gather(
        *(client.post(activity, json={"message_id": m}, headers=writer_headers) for m in ids),
        *(client.post(deleted, json={"message_ids": [m]}, headers=writer_headers) for m in ids),
        *(client.post(deleted, json={"message_ids": ids[i:]}, headers=writer_headers) for i in (0, 7, 13)),
        *(client.post(activity, json={"message_id": m}, headers=writer_headers) for m in ids),
    )

    assert await _count(client, conversation, reader_headers) == 1


async def test_a_deleted_conversation_still_takes_deletions_and_bad_calls_are_4xx(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    writer_headers: dict[str, str],
    reader_headers: dict[str, str],
) -> None:
    conversation = await start_conversation(alice)
    deleted, activity = _paths(conversation)
    await client.post(activity, json={"message_id": "u1"}, headers=writer_headers)
    await client.delete(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)

    after_delete = await client.post(deleted, json={"message_ids": ["u1"]}, headers=writer_headers)
    unknown = await client.post(
        "/api/v1/internal/conversations/0123456789abcdef01234567/deleted-messages",
        json={"message_ids": ["u1"]},
        headers=writer_headers,
    )
    empty = await client.post(deleted, json={"message_ids": []}, headers=writer_headers)
    too_many = await client.post(
        deleted, json={"message_ids": [f"m{i}" for i in range(201)]}, headers=writer_headers
    )
    bad_id = await client.post(deleted, json={"message_ids": ["../x"]}, headers=writer_headers)
    by_user = await client.post(deleted, json={"message_ids": ["u1"]}, headers=alice.headers)
    by_reader = await client.post(deleted, json={"message_ids": ["u1"]}, headers=reader_headers)

    assert after_delete.status_code == 200 and after_delete.json()["message_count"] == 0
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "conversation_not_found"
    assert [empty.status_code, too_many.status_code, bad_id.status_code] == [422, 422, 422]
    assert [by_user.status_code, by_reader.status_code] == [403, 403]
