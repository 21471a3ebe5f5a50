"""The invariants checker itself: quiet on a fleet that kept its books, and each broken book reported."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from bson import ObjectId
from pymongo import AsyncMongoClient

from chat_common.testing.fleet import run_sync
from tests.faults.conftest import Fleet


async def _sql(fleet: Fleet, statement: str, *args: Any) -> None:
    conn = await asyncpg.connect(fleet.databases.users_url)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def _mongo(
    fleet: Fleet, database: str, collection: str, query: dict[str, Any], change: dict[str, Any]
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(fleet.databases.mongodb_url)
    try:
        result = await client[database][collection].update_one(query, change)
        assert result.modified_count == 1
    finally:
        await client.close()


def test_a_fleet_that_kept_its_books_has_no_violations_and_each_broken_book_is_reported(fleet: Fleet) -> None:
    user = fleet.register()
    character = fleet.character(user)
    conversation = fleet.conversation(user, character["id"])
    sent = fleet.http.post(
        f"{fleet.url('message-service')}/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello there, captain"},
        headers=user.headers,
    )
    assert sent.status_code == 201, sent.text
    accepted = [sent.json()["user_message"]["id"]]
    reply_id = sent.json()["reply"]["id"]
    took, clean = fleet.wait_for_invariants([user.id], accepted, within=30)
    assert clean == [], [str(v) for v in clean]

    def broken() -> set[tuple[str, str]]:
        return {(v.invariant, v.subject) for v in fleet.violations([user.id], accepted)}

    run_sync(_sql(fleet, 'UPDATE users."user" SET credits = credits + 5 WHERE id = $1', uuid.UUID(user.id)))
    assert ("balance", user.id) in broken()

    stale = uuid.uuid4()
    past = datetime.now(UTC) - timedelta(minutes=5)
    run_sync(
        _sql(
            fleet,
            """INSERT INTO users.credit_reservation (id, user_id, amount, status, idempotency_key,
                   client_id, expires_at, created_at) VALUES ($1, $2, 3, 'held', 'stale', 'test', $3, $3)""",
            stale,
            uuid.UUID(user.id),
            past,
        )
    )
    assert ("reservation", str(stale)) in broken()

    messages, conversations = fleet.databases.messages_database, fleet.databases.conversations_database
    reply = {"_id": ObjectId(reply_id)}
    run_sync(_mongo(fleet, messages, "messages", reply, {"$inc": {"generation.spent": 1}}))
    assert ("charge", reply_id) in broken()

    run_sync(_mongo(fleet, messages, "messages", reply, {"$set": {"status": "generating"}}))
    assert ("reply", reply_id) in broken()

    counted = {"_id": ObjectId(conversation["id"])}
    run_sync(_mongo(fleet, conversations, "conversations", counted, {"$inc": {"message_count": 1}}))
    assert ("message_count", conversation["id"]) in broken()

    lost = str(ObjectId())
    accepted.append(lost)
    assert ("message_stored", lost) in broken()
