"""Every query on the conversations collection.

Changes are single-document atomic updates: a compare-and-set on `version`, and an idempotent
`$inc` guarded by `$nin` for activity (MONGODB.md rules 4 and 5; nx-27017 gets `$ne` on arrays wrong).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pydantic import BaseModel
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from app.models import Conversation
from app.models.conversation import Status
from chat_common.mongo import MONGO_CONTEXT, to_millis

# What reading a conversation needs; the (un)counted message ids can grow long and nobody reads them.
_WITHOUT_MESSAGE_IDS = {"counted_message_ids": 0, "uncounted_message_ids": 0}


def _document(raw: dict[str, Any] | None) -> Conversation | None:
    return None if raw is None else Conversation.model_validate(raw)


def _stored(value: Any) -> Any:
    """A value as a document holds it (times in milliseconds, see chat_common.mongo.MongoTime)."""
    if isinstance(value, BaseModel):
        return value.model_dump(context=MONGO_CONTEXT)
    if isinstance(value, datetime):
        return to_millis(value)
    return value


def _listing_filter(user_id: str, character_id: str | None, status: Status | None) -> dict[str, Any]:
    query: dict[str, Any] = {"user_id": user_id, "deleted_at": None}
    if character_id is not None:
        query["character_id"] = character_id
    if status is not None:
        query["status"] = status
    return query


class ConversationRepository:
    """The conversations collection of one database (the app's own, not Beanie's global binding,
    so that every app in a process, each on its own event loop, keeps its own client)."""

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = database[Conversation.Settings.name]

    async def insert(self, conversation: Conversation) -> Conversation:
        document = conversation.model_dump(by_alias=True, exclude={"id"}, context=MONGO_CONTEXT)
        conversation.id = (await self.collection.insert_one(document)).inserted_id
        return conversation

    async def get(self, conversation_id: ObjectId) -> Conversation | None:
        """A conversation, deleted or not."""
        return _document(await self.collection.find_one({"_id": conversation_id}, _WITHOUT_MESSAGE_IDS))

    async def get_live(self, conversation_id: ObjectId, user_id: str) -> Conversation | None:
        """The user's conversation, unless deleted."""
        query = {"_id": conversation_id, "user_id": user_id, "deleted_at": None}
        return _document(await self.collection.find_one(query, _WITHOUT_MESSAGE_IDS))

    async def list_live(
        self, user_id: str, *, character_id: str | None, status: Status | None, limit: int, offset: int
    ) -> tuple[list[Conversation], int]:
        """A page of the user's conversations, pinned first, then newest activity, and their total."""
        query = _listing_filter(user_id, character_id, status)
        cursor = (
            self.collection.find(query, _WITHOUT_MESSAGE_IDS)
            .sort([("pinned", -1), ("last_activity_at", -1), ("_id", -1)])
            .skip(offset)
            .limit(limit)
        )
        rows = [Conversation.model_validate(raw) async for raw in cursor]
        total = len(rows) + offset if 0 < len(rows) < limit else await self.count(query)
        return rows, total

    async def count(self, query: dict[str, Any]) -> int:
        """Documents matching `query`, by `$match` + `$count`: nx-27017's `count_documents` finds none
        when the filter has a null (`deleted_at: None`)."""
        found = await (await self.collection.aggregate([{"$match": query}, {"$count": "n"}])).to_list()
        return int(found[0]["n"]) if found else 0

    async def compare_and_set(
        self, conversation_id: ObjectId, user_id: str, version: int | None, changes: dict[str, Any]
    ) -> Conversation | None:
        """Apply `changes` if the conversation is live and still at `version` (any version when None);
        the new document, or None."""
        query: dict[str, Any] = {"_id": conversation_id, "user_id": user_id, "deleted_at": None}
        if version is not None:
            query["version"] = version
        raw = await self.collection.find_one_and_update(
            query,
            {"$set": {name: _stored(value) for name, value in changes.items()}, "$inc": {"version": 1}},
            projection=_WITHOUT_MESSAGE_IDS,
            return_document=ReturnDocument.AFTER,
        )
        return _document(raw)

    async def count_message(self, conversation_id: ObjectId, message_id: str) -> bool:
        """Count a message once in a live conversation: False when this message id was counted already
        (or the conversation is deleted)."""
        result = await self.collection.update_one(
            {"_id": conversation_id, "deleted_at": None, "counted_message_ids": {"$nin": [message_id]}},
            {"$inc": {"message_count": 1}, "$push": {"counted_message_ids": message_id}},
        )
        return bool(result.modified_count)

    async def count_all_at_once(
        self, conversation_id: ObjectId, message_ids: list[str], at: datetime, *, first: bool
    ) -> bool:
        """A batch's common case in one update: count `message_ids` and move the last-message and
        activity times to `at`, only if the conversation is live, none of the ids was counted, and `at`
        is not older than its times (with `first`: it has no message yet, `last_message_at` null, which
        `$lte` never matches and nx-27017 cannot put in an `$or`). False when nothing changed: the
        caller then takes the exact path (`count_message`, `advance_last_message`)."""
        at_ms = to_millis(at)
        result = await self.collection.update_one(
            {
                "_id": conversation_id,
                "deleted_at": None,
                "counted_message_ids": {"$nin": message_ids},
                "last_message_at": None if first else {"$lte": at_ms},
                "last_activity_at": {"$lte": at_ms},
            },
            {
                "$inc": {"message_count": len(message_ids)},
                "$push": {"counted_message_ids": {"$each": message_ids}},
                "$set": {"last_message_at": at_ms, "last_activity_at": at_ms},
            },
        )
        return bool(result.modified_count)

    async def uncount_all_at_once(self, conversation_id: ObjectId, message_ids: list[str]) -> bool:
        """A deletion's common case in one update: lower the count by all of `message_ids` when every one
        was counted and none uncounted yet. False when nothing changed: the caller then takes the exact
        path (`uncount_message`)."""
        result = await self.collection.update_one(
            {
                "_id": conversation_id,
                "counted_message_ids": {"$all": message_ids},
                "uncounted_message_ids": {"$nin": message_ids},
            },
            {
                "$inc": {"message_count": -len(message_ids)},
                "$push": {"uncounted_message_ids": {"$each": message_ids}},
            },
        )
        return bool(result.modified_count)

    async def uncount_as_read(self, conversation_id: ObjectId, message_ids: list[str]) -> list[str] | None:
        """A deletion of ids in any state in one update, planned from the ids the conversation holds:
        the counted ones lowered and marked uncounted, the never counted ones marked both, the
        uncounted ones left. The ids lowered; None when another call changed them meanwhile (the
        filter guards the plan), an empty list when there is nothing to do or no such conversation."""
        held = {"counted_message_ids": 1, "uncounted_message_ids": 1}
        raw = await self.collection.find_one({"_id": conversation_id}, held)
        if raw is None:
            return []
        counted, uncounted = (
            set(raw.get("counted_message_ids") or ()),
            set(raw.get("uncounted_message_ids") or ()),
        )
        lowered = [m for m in message_ids if m in counted and m not in uncounted]
        marked = [m for m in message_ids if m not in counted]
        if not lowered and not marked:
            return []
        # `$all: []` matches nothing on MongoDB (everything on nx-27017): only with ids
        still_counted: dict[str, Any] = {"$nin": marked, **({"$all": lowered} if lowered else {})}
        push: dict[str, Any] = {"uncounted_message_ids": {"$each": lowered + marked}}
        if marked:
            push["counted_message_ids"] = {"$each": marked}
        result = await self.collection.update_one(
            {
                "_id": conversation_id,
                "counted_message_ids": still_counted,
                "uncounted_message_ids": {"$nin": lowered + marked},
            },
            {"$push": push, "$inc": {"message_count": -len(lowered)}},
        )
        return lowered if result.modified_count else None

    async def uncount_message(self, conversation_id: ObjectId, message_id: str) -> bool:
        """Take a deleted message out of the count, once: True when this call lowered the count. A
        message never counted is only marked counted and uncounted, so that no late activity counts it;
        the two updates exclude each other (counted or not), so a concurrent count is either undone
        by the first or refused by the second."""
        collection = self.collection
        counted = {"_id": conversation_id, "counted_message_ids": message_id}
        for _ in range(2):
            result = await collection.update_one(
                {**counted, "uncounted_message_ids": {"$nin": [message_id]}},
                {"$inc": {"message_count": -1}, "$push": {"uncounted_message_ids": message_id}},
            )
            if result.modified_count:
                return True
            result = await collection.update_one(
                {"_id": conversation_id, "counted_message_ids": {"$nin": [message_id]}},
                {"$push": {"counted_message_ids": message_id, "uncounted_message_ids": message_id}},
            )
            if result.modified_count:
                return False
        return False  # counted and uncounted already (or no such conversation)

    async def advance_last_message(self, conversation_id: ObjectId, at: datetime) -> None:
        """Move the last-message and activity times forward to `at`, never back (a late retry of an
        older message leaves them). Three conditional updates, each safe under concurrency, because
        nx-27017 gets the one-step forms wrong: `$max` stores a string, and `$or` with a null branch
        finds nothing once other documents hold a number in that field."""
        at_ms = to_millis(at)
        collection = self.collection
        await collection.update_one(
            {"_id": conversation_id, "last_message_at": None}, {"$set": {"last_message_at": at_ms}}
        )
        for field in ("last_message_at", "last_activity_at"):
            await collection.update_one(
                {"_id": conversation_id, field: {"$lt": at_ms}}, {"$set": {field: at_ms}}
            )

    async def mark_deleted(
        self, conversation_id: ObjectId, user_id: str, at: datetime, key: str, *, version: int | None
    ) -> bool:
        """Soft-delete the live conversation (only at `version` unless None); False when nothing was."""
        query: dict[str, Any] = {"_id": conversation_id, "user_id": user_id, "deleted_at": None}
        if version is not None:
            query["version"] = version
        result = await self.collection.update_one(
            query,
            {
                "$set": {
                    "deleted_at": to_millis(at),
                    "deleted_key": key,
                    "updated_at": to_millis(at),
                    "changed_at": to_millis(at),
                },
                "$inc": {"version": 1},
            },
        )
        return bool(result.modified_count)

    async def deleted_after(self, cursor: str, until: str, limit: int) -> list[Conversation]:
        """Deleted conversations whose deletion key is after `cursor` and before `until`, oldest first."""
        query = {"deleted_key": {"$gt": cursor, "$lt": until}}
        found = self.collection.find(query, _WITHOUT_MESSAGE_IDS).sort("deleted_key", 1).limit(limit)
        return [Conversation.model_validate(raw) async for raw in found]

    async def changed_since(self, since: datetime, limit: int) -> list[str]:
        """Ids of conversations changed at or after `since` (at most `limit`, in no particular order)."""
        found = self.collection.find({"changed_at": {"$gte": to_millis(since)}}, {"_id": 1}).limit(limit)
        return [str(raw["_id"]) async for raw in found]

    async def uncounted(self, created_before: datetime, limit: int) -> list[tuple[ObjectId, str]]:
        """(id, character id) of conversations character-service has not acknowledged in its counter
        yet, oldest first."""
        query = {"character_counted": False, "created_at": {"$lt": to_millis(created_before)}}
        found = self.collection.find(query, {"_id": 1, "character_id": 1}).sort("created_at", 1).limit(limit)
        return [(raw["_id"], raw["character_id"]) async for raw in found]

    async def mark_counted(self, conversation_id: ObjectId) -> None:
        await self.collection.update_one({"_id": conversation_id}, {"$set": {"character_counted": True}})
