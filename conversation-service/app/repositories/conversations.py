"""Every query on the conversations collection.

Changes are single-document atomic updates: a compare-and-set on `version`, and an idempotent
`$inc` guarded by `$nin` for activity (MONGODB.md rules 4 and 5; nx-27017 gets `$ne` on arrays wrong).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from app.models import Conversation
from app.models.conversation import Status

# What reading a conversation needs; the counted message ids can grow long and nobody reads them.
_WITHOUT_MESSAGE_IDS = {"counted_message_ids": 0}


def _collection() -> Any:
    return Conversation.get_pymongo_collection()


def _document(raw: dict[str, Any] | None) -> Conversation | None:
    return None if raw is None else Conversation.model_validate(raw)


async def insert(conversation: Conversation) -> Conversation:
    await conversation.insert()
    return conversation


async def get(conversation_id: ObjectId) -> Conversation | None:
    """A conversation, deleted or not."""
    return _document(await _collection().find_one({"_id": conversation_id}, _WITHOUT_MESSAGE_IDS))


async def get_live(conversation_id: ObjectId, user_id: str) -> Conversation | None:
    """The user's conversation, unless deleted."""
    query = {"_id": conversation_id, "user_id": user_id, "deleted_at": None}
    return _document(await _collection().find_one(query, _WITHOUT_MESSAGE_IDS))


def _listing_filter(user_id: str, character_id: str | None, status: Status | None) -> dict[str, Any]:
    query: dict[str, Any] = {"user_id": user_id, "deleted_at": None}
    if character_id is not None:
        query["character_id"] = character_id
    if status is not None:
        query["status"] = status
    return query


async def list_live(
    user_id: str, *, character_id: str | None, status: Status | None, limit: int, offset: int
) -> tuple[list[Conversation], int]:
    """A page of the user's conversations, pinned first, then newest activity, and their total."""
    query = _listing_filter(user_id, character_id, status)
    cursor = (
        _collection()
        .find(query, _WITHOUT_MESSAGE_IDS)
        .sort([("pinned", -1), ("last_activity_at", -1), ("_id", -1)])
        .skip(offset)
        .limit(limit)
    )
    rows = [Conversation.model_validate(raw) async for raw in cursor]
    total = len(rows) + offset if 0 < len(rows) < limit else await count(query)
    return rows, total


async def count(query: dict[str, Any]) -> int:
    """Documents matching `query`, by `$match` + `$count`: nx-27017's `count_documents` finds none
    when the filter has a null (`deleted_at: None`)."""
    found = await (await _collection().aggregate([{"$match": query}, {"$count": "n"}])).to_list()
    return int(found[0]["n"]) if found else 0


async def compare_and_set(
    conversation_id: ObjectId, user_id: str, version: int, changes: dict[str, Any]
) -> Conversation | None:
    """Apply `changes` if the live conversation is still at `version`; the new document, or None."""
    raw = await _collection().find_one_and_update(
        {"_id": conversation_id, "user_id": user_id, "deleted_at": None, "version": version},
        {"$set": changes, "$inc": {"version": 1}},
        projection=_WITHOUT_MESSAGE_IDS,
        return_document=ReturnDocument.AFTER,
    )
    return _document(raw)


async def count_message(conversation_id: ObjectId, message_id: str) -> bool:
    """Count a message once: False when this message id was counted already."""
    result = await _collection().update_one(
        {"_id": conversation_id, "counted_message_ids": {"$nin": [message_id]}},
        {"$inc": {"message_count": 1}, "$push": {"counted_message_ids": message_id}},
    )
    return bool(result.modified_count)


async def advance_last_message(conversation_id: ObjectId, at: datetime) -> None:
    """Move the last-message and activity times forward to `at`, never back (a late retry of an
    older message leaves them). Not `$max`: nx-27017 stores its result as a string."""
    await _collection().update_one(
        {"_id": conversation_id, "$or": [{"last_message_at": None}, {"last_message_at": {"$lt": at}}]},
        {"$set": {"last_message_at": at}},
    )
    await _collection().update_one(
        {"_id": conversation_id, "last_activity_at": {"$lt": at}}, {"$set": {"last_activity_at": at}}
    )


async def mark_deleted(conversation_id: ObjectId, user_id: str, at: datetime, key: str) -> bool:
    result = await _collection().update_one(
        {"_id": conversation_id, "user_id": user_id, "deleted_at": None},
        {"$set": {"deleted_at": at, "deleted_key": key, "updated_at": at}, "$inc": {"version": 1}},
    )
    return bool(result.modified_count)


async def deleted_after(cursor: str, until: str, limit: int) -> list[Conversation]:
    """Deleted conversations whose deletion key is after `cursor` and before `until`, oldest first."""
    query = {"deleted_key": {"$gt": cursor, "$lt": until}}
    found = _collection().find(query, _WITHOUT_MESSAGE_IDS).sort("deleted_key", 1).limit(limit)
    return [Conversation.model_validate(raw) async for raw in found]


async def uncounted(created_before: datetime, limit: int) -> list[tuple[ObjectId, str]]:
    """(id, character id) of conversations character-service has not acknowledged in its counter
    yet, oldest first."""
    query = {"character_counted": False, "created_at": {"$lt": created_before}}
    found = _collection().find(query, {"_id": 1, "character_id": 1}).sort("created_at", 1).limit(limit)
    return [(raw["_id"], raw["character_id"]) async for raw in found]


async def mark_counted(conversation_id: ObjectId) -> None:
    await _collection().update_one({"_id": conversation_id}, {"$set": {"character_counted": True}})
