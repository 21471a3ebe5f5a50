"""Every query on the messages, conversation_states and deletions collections.

Times are stored as integer milliseconds (chat_common.mongo.MongoTime); every change is a single-
document update, conditional where a race matters (MONGODB.md rules 4 and 5).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.models import ConversationState, Deletion, Generation, Message
from app.models.message import CreditsState, Status
from chat_common.mongo import MONGO_CONTEXT, to_millis

DUPLICATE_KEY = 11000
PENDING_CREDITS = ("commit_pending", "release_pending")


def _stored(document: Message | ConversationState | Deletion) -> dict[str, Any]:
    stored: dict[str, Any] = document.model_dump(by_alias=True, context=MONGO_CONTEXT)
    return stored


class MessageRepository:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.messages = database[Message.Settings.name]
        self.states = database[ConversationState.Settings.name]
        self.deletions = database[Deletion.Settings.name]

    # Messages.

    async def insert(self, message: Message) -> Message:
        """Store a new message; its id (and unique key, unless set) are given here."""
        message.id = message.id or PydanticObjectId()
        message.unique_key = message.unique_key or str(message.id)
        await self.messages.insert_one(_stored(message))
        return message

    async def insert_all(self, messages: list[Message]) -> None:
        """Store new messages in one round trip, in order (the first that fails stops the rest)."""
        for message in messages:
            message.id = message.id or PydanticObjectId()
            message.unique_key = message.unique_key or str(message.id)
        await self.messages.insert_many([_stored(m) for m in messages], ordered=True)

    async def insert_greetings(self, greetings: list[Message]) -> None:
        """Store greetings whose unique keys are not taken yet; the taken ones were stored by a
        concurrent first read, which is what the keys are for."""
        for greeting in greetings:
            greeting.id = greeting.id or PydanticObjectId()
        try:
            await self.messages.insert_many([_stored(g) for g in greetings], ordered=False)
        except BulkWriteError as exc:  # duplicates only: those greetings exist already, as wanted
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise

    async def get(self, message_id: ObjectId) -> Message | None:
        raw = await self.messages.find_one({"_id": message_id})
        return None if raw is None else Message.model_validate(raw)

    async def get_by_str(self, message_id: str) -> Message | None:
        return await self.get(ObjectId(message_id)) if ObjectId.is_valid(message_id) else None

    async def by_ids(self, message_ids: list[str]) -> dict[str, Message]:
        """The messages of these ids (those that exist), by id."""
        oids = [ObjectId(message_id) for message_id in set(message_ids) if ObjectId.is_valid(message_id)]
        found = self.messages.find({"_id": {"$in": oids}})
        return {str(raw["_id"]): Message.model_validate(raw) async for raw in found}

    async def for_conversation(self, conversation_id: str) -> list[Message]:
        cursor = self.messages.find({"conversation_id": conversation_id})
        return [Message.model_validate(raw) async for raw in cursor]

    async def renew_lease(self, message_id: ObjectId, until: datetime) -> bool:
        result = await self.messages.update_one(
            {"_id": message_id, "status": "generating"}, {"$set": {"lease_until": to_millis(until)}}
        )
        return bool(result.modified_count)

    async def finish(
        self,
        message_id: ObjectId,
        *,
        status: Status,
        content: str,
        reasoning: str | None,
        generation: Generation,
        at: datetime,
    ) -> Message | None:
        """Move a generating reply to its end state, once; the reply as stored then, or None when it
        had already ended (the sweeper found its lease expired, or another finish won) or is gone."""
        raw = await self.messages.find_one_and_update(
            {"_id": message_id, "status": "generating"},
            {
                "$set": {
                    "status": status,
                    "content": content,
                    "reasoning": reasoning,
                    "generation": generation.model_dump(context=MONGO_CONTEXT),
                    "lease_until": None,
                    "followups_pending": True,
                    "updated_at": to_millis(at),
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        return None if raw is None else Message.model_validate(raw)

    async def restart(
        self, message_id: ObjectId, *, generation: Generation, lease_until: datetime, at: datetime
    ) -> bool:
        """A finished reply generating again (continue): False when it is generating already, or its
        last generation's credits are not settled (its reservation must not be overwritten)."""
        result = await self.messages.update_one(
            {
                "_id": message_id,
                "status": {"$in": ["completed", "stopped"]},
                "generation.credits": {"$in": ["committed", "released", "refused", "none"]},
            },
            {
                "$set": {
                    "status": "generating",
                    "generation": generation.model_dump(context=MONGO_CONTEXT),
                    "lease_until": to_millis(lease_until),
                    "updated_at": to_millis(at),
                }
            },
        )
        return bool(result.modified_count)

    async def set_credits(
        self, message_id: ObjectId, before: CreditsState, after: CreditsState, reservation_id: str | None
    ) -> bool:
        """Move the credits state of the reply's reservation `reservation_id` on from `before` (not of a
        later reservation: a continuation may have replaced it since it was read)."""
        result = await self.messages.update_one(
            {"_id": message_id, "generation.credits": before, "generation.reservation_id": reservation_id},
            {"$set": {"generation.credits": after}},
        )
        return bool(result.modified_count)

    async def expired_leases(self, now: datetime, limit: int = 100) -> list[Message]:
        query = {"status": "generating", "lease_until": {"$lt": to_millis(now)}}
        return [Message.model_validate(raw) async for raw in self.messages.find(query).limit(limit)]

    async def with_credits(self, state: CreditsState, limit: int = 100) -> list[Message]:
        query = {"generation.credits": state}
        return [Message.model_validate(raw) async for raw in self.messages.find(query).limit(limit)]

    async def unsettled(self, conversation_id: str) -> list[Message]:
        """The conversation's replies whose commit or release is not acknowledged yet."""
        query = {"conversation_id": conversation_id, "generation.credits": {"$in": list(PENDING_CREDITS)}}
        return [Message.model_validate(raw) async for raw in self.messages.find(query)]

    async def with_followups_pending(self, updated_before: datetime, limit: int = 100) -> list[Message]:
        """Replies whose follow-ups are still pending since before `updated_before`."""
        query = {"followups_pending": True, "updated_at": {"$lt": to_millis(updated_before)}}
        return [Message.model_validate(raw) async for raw in self.messages.find(query).limit(limit)]

    async def count_apart(self, message_ids: Sequence[ObjectId], at: datetime) -> None:
        """Leave these (user) messages' follow-ups pending, each counting itself only: the reply that
        would have counted them is being deleted before it could."""
        await self.messages.update_many(
            {"_id": {"$in": message_ids}},
            {"$set": {"followups_pending": True, "with_parent": False, "updated_at": to_millis(at)}},
        )

    async def followups_done(self, message_ids: list[ObjectId]) -> None:
        await self.messages.update_many({"_id": {"$in": message_ids}}, {"$set": {"followups_pending": False}})

    async def delete(self, message_ids: list[ObjectId]) -> int:
        result = await self.messages.delete_many({"_id": {"$in": message_ids}})
        return int(result.deleted_count)

    async def delete_conversation(self, conversation_id: str) -> int:
        result = await self.messages.delete_many({"conversation_id": conversation_id})
        await self.states.delete_one({"_id": conversation_id})
        return int(result.deleted_count)

    # Deletions not told to conversation-service yet.

    async def record_deletion(self, deletion: Deletion) -> Deletion:
        deletion.id = deletion.id or PydanticObjectId()
        await self.deletions.insert_one(_stored(deletion))
        return deletion

    async def deletions_before(self, created_before: datetime, limit: int = 100) -> list[Deletion]:
        query = {"created_at": {"$lt": to_millis(created_before)}}
        found = self.deletions.find(query).sort("created_at", ASCENDING).limit(limit)
        return [Deletion.model_validate(raw) async for raw in found]

    async def deletion_told(self, deletion_id: ObjectId) -> None:
        await self.deletions.delete_one({"_id": deletion_id})

    async def stored_ids(self, message_ids: list[str]) -> set[str]:
        """Which of these messages are stored."""
        oids = [ObjectId(message_id) for message_id in message_ids if ObjectId.is_valid(message_id)]
        found = self.messages.find({"_id": {"$in": oids}}, {"_id": 1})
        return {str(raw["_id"]) async for raw in found}

    # Conversation state.

    async def state(self, conversation_id: str) -> ConversationState | None:
        raw = await self.states.find_one({"_id": conversation_id})
        return None if raw is None else ConversationState.model_validate(raw)

    async def set_active_leaf(self, conversation_id: str, user_id: str, leaf_id: str, at: datetime) -> None:
        await self.states.update_one(
            {"_id": conversation_id},
            {
                "$set": {"active_leaf_id": leaf_id, "updated_at": to_millis(at)},
                "$inc": {"version": 1},
                "$setOnInsert": {"user_id": user_id},
            },
            upsert=True,
        )

    async def ensure_active_leaf(
        self, conversation_id: str, user_id: str, leaf_id: str, at: datetime
    ) -> None:
        """Set the active leaf unless the conversation has one (its first read); a concurrent first
        read may have inserted it (a duplicate key), which is as good."""
        with contextlib.suppress(DuplicateKeyError):
            await self.states.update_one(
                {"_id": conversation_id},
                {
                    "$setOnInsert": {
                        "user_id": user_id,
                        "active_leaf_id": leaf_id,
                        "version": 1,
                        "updated_at": to_millis(at),
                    }
                },
                upsert=True,
            )
