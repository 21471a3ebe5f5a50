"""Response bodies of the chat-session endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.models import ChatSession
from app.models.session import EndReason
from chat_common.pagination import Page

SessionStatus = Literal["active", "ended"]


class SessionPublic(BaseModel):
    id: str
    conversation_id: str
    status: SessionStatus = Field(description="ended once ended, or idle longer than the idle timeout")
    started_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None = Field(description="For a session that idled out: its last activity")
    end_reason: EndReason | None = Field(description="ended (by the user) or idle (no heartbeat)")
    duration_seconds: float = Field(description="From the start to its end, or to now while active")


class SessionsPublic(Page[SessionPublic]):
    total_seconds: float = Field(description="The time of all the conversation's sessions, summed")


def duration_seconds(started_at: datetime, ended_at: datetime) -> float:
    return round((ended_at - started_at).total_seconds(), 3)


def public(session: ChatSession, now: datetime) -> SessionPublic:
    """A session as it stands at `now`; an idled-out one must already carry its end (see
    services.sessions.as_of)."""
    return SessionPublic(
        id=str(session.id),
        conversation_id=session.conversation_id,
        status="active" if session.ended_at is None else "ended",
        started_at=session.started_at,
        last_activity_at=session.last_activity_at,
        ended_at=session.ended_at,
        end_reason=session.end_reason,
        duration_seconds=duration_seconds(session.started_at, session.ended_at or now),
    )
