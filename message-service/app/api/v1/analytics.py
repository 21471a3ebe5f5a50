"""Analytics per UTC day: your own use, your character's activity, and (admins) the whole service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.core.deps import RuntimeDep
from app.schemas.analytics import CharacterAnalytics, MyAnalytics, Overview
from app.services import analytics as analytics_service
from chat_common.auth import CurrentAdmin, CurrentUser

router = APIRouter(prefix="/analytics", tags=["analytics"])

From = Annotated[
    str | None,
    Query(
        alias="from", max_length=10, description="First UTC day, YYYY-MM-DD (default: 29 days before `to`)"
    ),
]
To = Annotated[str | None, Query(max_length=10, description="Last UTC day, YYYY-MM-DD (default: today)")]
RANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "A day not as YYYY-MM-DD, `from` after `to`, or more than 366 days"}
}


@router.get("/me", response_model=MyAnalytics, responses=RANGE_RESPONSES)
async def my_analytics(user: CurrentUser, rt: RuntimeDep, first: From = None, to: To = None) -> MyAnalytics:
    """Your messages, replies, tokens and credits spent, per day (messages as they are stored: those of
    deleted messages and conversations are not counted)."""
    start, end = analytics_service.day_range(first, to)
    return await analytics_service.mine(rt, user.user_id, start, end)


@router.get(
    "/characters/{character_id}",
    response_model=CharacterAnalytics,
    responses={**RANGE_RESPONSES, 404: {"description": "No such character of yours"}},
)
async def character_analytics(
    character_id: str, user: CurrentUser, rt: RuntimeDep, first: From = None, to: To = None
) -> CharacterAnalytics:
    """Your character's conversations, messages, different users, average reply latency and time to
    the first token, per day (everyone's conversations with it). Admins may read any character."""
    start, end = analytics_service.day_range(first, to)
    return await analytics_service.character(rt, user, character_id, start, end)


@router.get(
    "/overview",
    response_model=Overview,
    responses={**RANGE_RESPONSES, 403: {"description": "Administrators only"}},
)
async def overview(admin: CurrentAdmin, rt: RuntimeDep, first: From = None, to: To = None) -> Overview:
    """The whole service per day: messages, tokens, credits, active users; its busiest characters."""
    start, end = analytics_service.day_range(first, to)
    return await analytics_service.overview(rt, start, end)
