"""Tags of public characters, with counts."""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas.character import TagCount
from app.services import characters as character_service
from chat_common.auth import CurrentPrincipal
from chat_common.database import ReadSessionDep
from chat_common.pagination import Page, PageDep

router = APIRouter(tags=["characters"])


@router.get("/tags", response_model=Page[TagCount])
async def tags(_: CurrentPrincipal, session: ReadSessionDep, page: PageDep) -> Page[TagCount]:
    """Most used first."""
    rows, total = await character_service.tag_counts(session, limit=page.limit, offset=page.offset)
    return Page.of([TagCount(tag=t, count=n) for t, n in rows], total, page)
