"""A chat session: a stretch of time a user spends in one conversation."""

from __future__ import annotations

from typing import Literal

from beanie import Document
from pymongo import ASCENDING, DESCENDING, IndexModel

from chat_common.mongo import MongoTime

EndReason = Literal["ended", "idle"]


class ChatSession(Document):
    conversation_id: str
    user_id: str
    started_at: MongoTime
    last_activity_at: MongoTime
    ended_at: MongoTime | None = None
    end_reason: EndReason | None = None
    # The conversation's id while the session may be active, the session's own id once ended: a unique
    # index on it lets one session at most be active per conversation, however many start at once.
    active_key: str

    class Settings:
        name = "chat_sessions"
        indexes = [
            IndexModel([("active_key", ASCENDING)], name="one_active_per_conversation", unique=True),
            IndexModel([("conversation_id", ASCENDING), ("started_at", DESCENDING)], name="by_conversation"),
        ]
