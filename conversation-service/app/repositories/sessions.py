"""Every query on the chat_sessions collection.

At most one session per conversation may be active: its `active_key` is the conversation id while it
may be active, its own id once ended, under a unique index. Every change is a single-document
conditional update (MONGODB.md rule 5).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from app.models import ChatSession
from app.models.session import EndReason, to_ms


def _collection() -> Any:
    return ChatSession.get_pymongo_collection()


def _document(raw: dict[str, Any] | None) -> ChatSession | None:
    return None if raw is None else ChatSession.model_validate(raw)


async def insert_active(session: ChatSession) -> bool:
    """Store a session as its conversation's active one; False when another one holds that place."""
    try:
        await session.insert()
    except DuplicateKeyError:
        return False
    return True


async def get_owned(session_id: ObjectId, user_id: str) -> ChatSession | None:
    return _document(await _collection().find_one({"_id": session_id, "user_id": user_id}))


async def get_active(conversation_id: str) -> ChatSession | None:
    """The conversation's session that may still be active (not ended; it may have idled out)."""
    return _document(await _collection().find_one({"active_key": conversation_id}))


async def touch(session_id: ObjectId, conversation_id: str, now: datetime, idle_since: datetime) -> bool:
    """Record activity at `now` if the session is neither ended nor idle since `idle_since`."""
    result = await _collection().update_one(
        {"_id": session_id, "active_key": conversation_id, "last_activity_ms": {"$gt": to_ms(idle_since)}},
        {"$set": {"last_activity_ms": to_ms(now)}},
    )
    return bool(result.modified_count)


async def end_active(
    session_id: ObjectId, conversation_id: str, *, at: datetime, idle_since: datetime
) -> bool:
    """End the session at `at` (reason "ended") if it is neither ended nor idle since `idle_since`."""
    return await _end(session_id, conversation_id, {"$gt": to_ms(idle_since)}, at=at, reason="ended")


async def end_idle(session_id: ObjectId, conversation_id: str, *, last_activity_at: datetime) -> bool:
    """Record a session that idled out as ended at its last activity (reason "idle"), unless it was
    ended meanwhile or had activity after `last_activity_at`."""
    condition = {"$lte": to_ms(last_activity_at)}
    return await _end(session_id, conversation_id, condition, at=last_activity_at, reason="idle")


async def _end(
    session_id: ObjectId, conversation_id: str, activity: dict[str, Any], *, at: datetime, reason: EndReason
) -> bool:
    result = await _collection().update_one(
        {"_id": session_id, "active_key": conversation_id, "last_activity_ms": activity},
        {"$set": {"ended_ms": to_ms(at), "end_reason": reason, "active_key": str(session_id)}},
    )
    return bool(result.modified_count)


async def page_for_conversation(conversation_id: str, *, limit: int, offset: int) -> list[ChatSession]:
    """A page of the conversation's sessions, newest first."""
    cursor = (
        _collection()
        .find({"conversation_id": conversation_id})
        .sort([("started_at", -1), ("_id", -1)])
        .skip(offset)
        .limit(limit)
    )
    return [ChatSession.model_validate(raw) async for raw in cursor]


async def spans_for_conversation(conversation_id: str) -> list[tuple[datetime, int, int | None]]:
    """(started_at, last_activity_ms, ended_ms) of each of the conversation's sessions."""
    fields = {"_id": 0, "started_at": 1, "last_activity_ms": 1, "ended_ms": 1}
    cursor = _collection().find({"conversation_id": conversation_id}, fields)
    return [(raw["started_at"], raw["last_activity_ms"], raw.get("ended_ms")) async for raw in cursor]
