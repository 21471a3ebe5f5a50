"""Chat-session rules: one active session per conversation, heartbeats, ending, and idle expiry.

A session with no activity for the idle timeout counts as ended at its last activity in every read,
whether or not anything has recorded that yet; the next write that meets it records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bson import ObjectId

from app.core.clock import Clock
from app.models import ChatSession
from app.repositories.conversations import ConversationRepository
from app.repositories.sessions import SessionRepository
from app.schemas.session import SessionPublic, duration_seconds, public
from app.services import conversations as conversation_service
from chat_common.errors import ConflictError, NotFoundError
from chat_common.mongo import parse_object_id

# Each attempt either returns or loses to a concurrent change that the next attempt reads.
_ATTEMPTS = 5


@dataclass(frozen=True)
class Stores:
    """What sessions are read from: their own collection and the conversations they belong to."""

    sessions: SessionRepository
    conversations: ConversationRepository


class SessionEndedError(ConflictError):
    code = "session_ended"


def _not_found() -> NotFoundError:
    return NotFoundError("Session not found", code="session_not_found")


def _session_oid(session_id: str) -> ObjectId:
    try:
        return parse_object_id(session_id, "Session")
    except NotFoundError:
        raise _not_found() from None


def is_idle(session: ChatSession, idle_since: datetime) -> bool:
    return session.ended_at is None and session.last_activity_at <= idle_since


def as_of(session: ChatSession, idle_since: datetime) -> ChatSession:
    """The session with an idle-out shown as its end: ended at its last activity, reason idle."""
    if is_idle(session, idle_since):
        idled: ChatSession = session.model_copy(
            update={"ended_at": session.last_activity_at, "end_reason": "idle"}
        )
        return idled
    return session


def _present(session: ChatSession, now: datetime, idle_timeout: timedelta) -> SessionPublic:
    return public(as_of(session, now - idle_timeout), now)


async def _owned(stores: Stores, session_id: str, user_id: str) -> ChatSession:
    """The user's session, while its conversation is theirs and not deleted."""
    session = await stores.sessions.get_owned(_session_oid(session_id), user_id)
    if session is None:
        raise _not_found()
    try:
        await conversation_service.get_owned(stores.conversations, session.conversation_id, user_id)
    except NotFoundError:
        raise _not_found() from None
    return session


async def start(
    stores: Stores, *, conversation_id: str, user_id: str, clock: Clock, idle_timeout: timedelta
) -> tuple[SessionPublic, bool]:
    """The conversation's active session, started now unless one is (True when started here)."""
    conversation = await conversation_service.get_owned(stores.conversations, conversation_id, user_id)
    key = str(conversation.id)
    for _ in range(_ATTEMPTS):
        now = clock.now()
        current = await stores.sessions.get_active(key)
        if current is not None and current.id is not None:
            if not is_idle(current, now - idle_timeout):
                return _present(current, now, idle_timeout), False
            await stores.sessions.end_idle(current.id, key, last_activity_at=current.last_activity_at)
            continue
        session = ChatSession(
            conversation_id=key,
            user_id=conversation.user_id,
            started_at=now,
            last_activity_at=now,
            active_key=key,
        )
        if await stores.sessions.insert_active(session):
            return _present(session, now, idle_timeout), True
    raise ConflictError("Sessions of this conversation changed too often; try again", code="session_conflict")


async def read(
    stores: Stores, *, session_id: str, user_id: str, clock: Clock, idle_timeout: timedelta
) -> SessionPublic:
    """The user's session as it is now (one idle past the timeout reads as ended at its last activity)."""
    return _present(await _owned(stores, session_id, user_id), clock.now(), idle_timeout)


async def heartbeat(
    stores: Stores, *, session_id: str, user_id: str, clock: Clock, idle_timeout: timedelta
) -> SessionPublic:
    """Record activity now; 409 session_ended when the session was ended or idled out."""
    session = await _owned(stores, session_id, user_id)
    assert session.id is not None
    now = clock.now()
    if not await stores.sessions.touch(session.id, session.conversation_id, now, now - idle_timeout):
        raise SessionEndedError(
            "The session has ended; start a new one", details={"session_id": str(session.id)}
        )
    return _present(session.model_copy(update={"last_activity_at": now}), now, idle_timeout)


async def end(
    stores: Stores, *, session_id: str, user_id: str, clock: Clock, idle_timeout: timedelta
) -> SessionPublic:
    """End the session now; an ended one stays as it is, an idled-out one ends at its last activity."""
    session = await _owned(stores, session_id, user_id)
    assert session.id is not None
    for _ in range(_ATTEMPTS):
        now = clock.now()
        if session.ended_at is not None:
            return _present(session, now, idle_timeout)
        if is_idle(session, now - idle_timeout):
            await stores.sessions.end_idle(
                session.id, session.conversation_id, last_activity_at=session.last_activity_at
            )
        else:
            await stores.sessions.end_active(
                session.id, session.conversation_id, at=now, idle_since=now - idle_timeout
            )
        # Ended here or by a concurrent request, or a heartbeat came between: read what is stored.
        session = await _owned(stores, session_id, user_id)
    raise ConflictError("The session changed too often while ending it; try again", code="session_conflict")


async def list_for_conversation(
    stores: Stores,
    *,
    conversation_id: str,
    user_id: str,
    clock: Clock,
    idle_timeout: timedelta,
    limit: int,
    offset: int,
) -> tuple[list[SessionPublic], int, float]:
    """A page of the conversation's sessions (newest first), their number and their summed time."""
    conversation = await conversation_service.get_owned(stores.conversations, conversation_id, user_id)
    key = str(conversation.id)
    now = clock.now()
    idle_since = now - idle_timeout
    rows = await stores.sessions.page_for_conversation(key, limit=limit, offset=offset)
    spans = await stores.sessions.spans_for_conversation(key)
    total_seconds = 0.0
    for started_at, last_activity_at, ended_at in spans:
        if ended_at is None and last_activity_at <= idle_since:
            ended_at = last_activity_at
        total_seconds += duration_seconds(started_at, ended_at or now)
    return [_present(row, now, idle_timeout) for row in rows], len(spans), round(total_seconds, 3)
