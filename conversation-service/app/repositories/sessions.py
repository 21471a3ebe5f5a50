"""Every query on the chat_sessions collection.

At most one session per conversation may be active: its `active_key` is the conversation id while it
may be active, its own id once ended, under a unique index. Every change is a single-document
conditional update (MONGODB.md rule 5). Times are compared as stored: integer milliseconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.models import ChatSession
from app.models.session import EndReason
from chat_common.mongo import MONGO_CONTEXT, from_millis, to_millis


def _document(raw: dict[str, Any] | None) -> ChatSession | None:
    return None if raw is None else ChatSession.model_validate(raw)


class SessionRepository:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = database[ChatSession.Settings.name]

    async def insert_active(self, session: ChatSession) -> bool:
        """Store a session as its conversation's active one; False when another one holds that place."""
        document = session.model_dump(by_alias=True, exclude={"id"}, context=MONGO_CONTEXT)
        try:
            session.id = (await self.collection.insert_one(document)).inserted_id
        except DuplicateKeyError:
            return False
        return True

    async def get_owned(self, session_id: ObjectId, user_id: str) -> ChatSession | None:
        return _document(await self.collection.find_one({"_id": session_id, "user_id": user_id}))

    async def get_active(self, conversation_id: str) -> ChatSession | None:
        """The conversation's session that may still be active (not ended; it may have idled out)."""
        return _document(await self.collection.find_one({"active_key": conversation_id}))

    async def touch(
        self, session_id: ObjectId, conversation_id: str, now: datetime, idle_since: datetime
    ) -> bool:
        """Record activity at `now` if the session is neither ended nor idle since `idle_since`."""
        result = await self.collection.update_one(
            {
                "_id": session_id,
                "active_key": conversation_id,
                "last_activity_at": {"$gt": to_millis(idle_since)},
            },
            {"$set": {"last_activity_at": to_millis(now)}},
        )
        return bool(result.modified_count)

    async def end_active(
        self, session_id: ObjectId, conversation_id: str, *, at: datetime, idle_since: datetime
    ) -> bool:
        """End the session at `at` (reason "ended") if it is neither ended nor idle since `idle_since`."""
        condition = {"$gt": to_millis(idle_since)}
        return await self._end(session_id, conversation_id, condition, at=at, reason="ended")

    async def end_idle(
        self, session_id: ObjectId, conversation_id: str, *, last_activity_at: datetime
    ) -> bool:
        """Record a session that idled out as ended at its last activity (reason "idle"), unless it was
        ended meanwhile or had activity after `last_activity_at`."""
        condition = {"$lte": to_millis(last_activity_at)}
        return await self._end(session_id, conversation_id, condition, at=last_activity_at, reason="idle")

    async def _end(
        self,
        session_id: ObjectId,
        conversation_id: str,
        activity: dict[str, Any],
        *,
        at: datetime,
        reason: EndReason,
    ) -> bool:
        result = await self.collection.update_one(
            {"_id": session_id, "active_key": conversation_id, "last_activity_at": activity},
            {"$set": {"ended_at": to_millis(at), "end_reason": reason, "active_key": str(session_id)}},
        )
        return bool(result.modified_count)

    async def page_for_conversation(
        self, conversation_id: str, *, limit: int, offset: int
    ) -> list[ChatSession]:
        """A page of the conversation's sessions, newest first."""
        cursor = (
            self.collection.find({"conversation_id": conversation_id})
            .sort([("started_at", -1), ("_id", -1)])
            .skip(offset)
            .limit(limit)
        )
        return [ChatSession.model_validate(raw) async for raw in cursor]

    async def spans_for_conversation(
        self, conversation_id: str
    ) -> list[tuple[datetime, datetime, datetime | None]]:
        """(started_at, last_activity_at, ended_at) of each of the conversation's sessions."""
        fields = {"_id": 0, "started_at": 1, "last_activity_at": 1, "ended_at": 1}
        cursor = self.collection.find({"conversation_id": conversation_id}, fields)
        return [
            (
                from_millis(raw["started_at"]),
                from_millis(raw["last_activity_at"]),
                from_millis(raw.get("ended_at")),
            )
            async for raw in cursor
        ]
