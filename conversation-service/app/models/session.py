"""A chat session: a stretch of time a user spends in one conversation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from beanie import Document
from pymongo import ASCENDING, DESCENDING, IndexModel

EndReason = Literal["ended", "idle"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class ChatSession(Document):
    conversation_id: str
    user_id: str
    started_at: datetime
    # The times that updates change are milliseconds since the epoch (UTC), not datetimes: nx-27017
    # stores a datetime given to `$set` as a string, which no longer compares with datetimes.
    last_activity_ms: int
    ended_ms: int | None = None
    end_reason: EndReason | None = None
    # The conversation's id while the session may be active, the session's own id once ended: a unique
    # index on it lets one session at most be active per conversation, however many start at once.
    active_key: str

    @property
    def last_activity_at(self) -> datetime:
        return from_ms(self.last_activity_ms)

    @property
    def ended_at(self) -> datetime | None:
        return None if self.ended_ms is None else from_ms(self.ended_ms)

    class Settings:
        name = "chat_sessions"
        indexes = [
            IndexModel([("active_key", ASCENDING)], name="one_active_per_conversation", unique=True),
            IndexModel([("conversation_id", ASCENDING), ("started_at", DESCENDING)], name="by_conversation"),
        ]
