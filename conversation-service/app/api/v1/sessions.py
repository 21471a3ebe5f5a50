"""The caller's chat sessions: start one in a conversation, keep it alive, end it, list them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response, status

from app.core.deps import ClockDep, SessionStoresDep, SettingsDep
from app.schemas.session import SessionPublic, SessionsPublic
from app.services import sessions as session_service
from chat_common.auth import CurrentUser
from chat_common.locations import set_location
from chat_common.pagination import PageDep

router = APIRouter(tags=["sessions"])

Responses = dict[int | str, dict[str, Any]]
CONVERSATION_NOT_FOUND: Responses = {
    404: {"description": "No such conversation of yours (conversation_not_found)"}
}
SESSION_NOT_FOUND: Responses = {404: {"description": "No such session of yours (session_not_found)"}}


def _idle_timeout(settings: SettingsDep) -> timedelta:
    return timedelta(seconds=settings.session_idle_timeout_seconds)


@router.post(
    "/conversations/{conversation_id}/sessions",
    response_model=SessionPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "The conversation's session that is already active"},
        **CONVERSATION_NOT_FOUND,
    },
)
async def start_session(
    conversation_id: str,
    user: CurrentUser,
    clock: ClockDep,
    settings: SettingsDep,
    response: Response,
    stores: SessionStoresDep,
    request: Request,
) -> SessionPublic:
    """Start a session (201, `Location`: the session), or get the one already active in this
    conversation (200)."""
    session, started = await session_service.start(
        stores,
        conversation_id=conversation_id,
        user_id=user.user_id,
        clock=clock,
        idle_timeout=_idle_timeout(settings),
    )
    if started:
        set_location(request, response, "read_session", session_id=session.id)
    else:
        response.status_code = status.HTTP_200_OK
    return session


@router.get("/sessions/{session_id}", response_model=SessionPublic, responses=SESSION_NOT_FOUND)
async def read_session(
    session_id: str, user: CurrentUser, clock: ClockDep, settings: SettingsDep, stores: SessionStoresDep
) -> SessionPublic:
    """One of your sessions, as it is now."""
    return await session_service.read(
        stores, session_id=session_id, user_id=user.user_id, clock=clock, idle_timeout=_idle_timeout(settings)
    )


@router.post(
    "/sessions/{session_id}/heartbeat",
    response_model=SessionPublic,
    responses={
        409: {"description": "The session was ended or idled out (session_ended)"},
        **SESSION_NOT_FOUND,
    },
)
async def heartbeat(
    session_id: str, user: CurrentUser, clock: ClockDep, settings: SettingsDep, stores: SessionStoresDep
) -> SessionPublic:
    """Keep the session active: without one for the idle timeout it ends at its last activity."""
    return await session_service.heartbeat(
        stores, session_id=session_id, user_id=user.user_id, clock=clock, idle_timeout=_idle_timeout(settings)
    )


@router.post("/sessions/{session_id}/end", response_model=SessionPublic, responses=SESSION_NOT_FOUND)
async def end_session(
    session_id: str, user: CurrentUser, clock: ClockDep, settings: SettingsDep, stores: SessionStoresDep
) -> SessionPublic:
    """End the session now; ending an ended session returns it unchanged."""
    return await session_service.end(
        stores, session_id=session_id, user_id=user.user_id, clock=clock, idle_timeout=_idle_timeout(settings)
    )


@router.get(
    "/conversations/{conversation_id}/sessions",
    response_model=SessionsPublic,
    responses=CONVERSATION_NOT_FOUND,
)
async def list_sessions(
    conversation_id: str,
    user: CurrentUser,
    clock: ClockDep,
    settings: SettingsDep,
    page: PageDep,
    stores: SessionStoresDep,
) -> SessionsPublic:
    """The conversation's sessions, newest first, and the time of all of them summed."""
    items, total, total_seconds = await session_service.list_for_conversation(
        stores,
        conversation_id=conversation_id,
        user_id=user.user_id,
        clock=clock,
        idle_timeout=_idle_timeout(settings),
        limit=page.limit,
        offset=page.offset,
    )
    return SessionsPublic(
        items=items, total=total, limit=page.limit, offset=page.offset, total_seconds=total_seconds
    )
